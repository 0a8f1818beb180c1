namespace AttentionEngine.Bindings.Cuda;

/// <summary>An NVRTC call failed: carries the call, the status name and, for compilations, the compiler log.</summary>
public sealed class NvrtcException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> failing with <paramref name="status"/> (<paramref name="statusName"/>), with the compiler log if there is one.</summary>
    public NvrtcException(string call, int status, string statusName, string? log = null)
        : base($"{call} failed with {statusName} ({status}){(string.IsNullOrWhiteSpace(log) ? "" : $":\n{log.Trim()}")}")
    {
        Call = call;
        Status = status;
        StatusName = statusName;
        Log = log;
    }

    /// <summary>The NVRTC call that failed.</summary>
    public string Call { get; }
    /// <summary>The nvrtcResult status code.</summary>
    public int Status { get; }
    /// <summary>The status's name as NVRTC gives it (nvrtcGetErrorString).</summary>
    public string StatusName { get; }
    /// <summary>The compiler log, for failed compilations; null otherwise.</summary>
    public string? Log { get; }
}
