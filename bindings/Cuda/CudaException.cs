namespace AttentionEngine.Bindings.Cuda;

/// <summary>A CUDA driver call failed: carries the call and the status name (CUDA_ERROR_...).</summary>
public sealed class CudaException : Exception
{
    public CudaException(string call, int status)
        : base($"{call} failed with {CudaDriver.StatusName(status)} ({status})")
    {
        Call = call;
        Status = status;
    }

    public string Call { get; }
    public int Status { get; }

    /// <summary>Throws for a non-zero status.</summary>
    public static void Check(int status, string call)
    {
        if (status != 0) throw new CudaException(call, status);
    }
}
