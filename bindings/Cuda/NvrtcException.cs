namespace AttentionEngine.Bindings.Cuda;

/// <summary>An NVRTC call failed: carries the call, the status name and, for compilations, the compiler log.</summary>
public sealed class NvrtcException : Exception
{
    public NvrtcException(string call, int status, string statusName, string? log = null)
        : base($"{call} failed with {statusName} ({status}){(string.IsNullOrWhiteSpace(log) ? "" : $":\n{log.Trim()}")}")
    {
        Call = call;
        Status = status;
        StatusName = statusName;
        Log = log;
    }

    public string Call { get; }
    public int Status { get; }
    public string StatusName { get; }
    public string? Log { get; }
}
