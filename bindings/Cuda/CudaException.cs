namespace AttentionEngine.Bindings.Cuda;

/// <summary>A CUDA driver call failed: carries the call and the status name (CUDA_ERROR_...).</summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> failing with CUresult <paramref name="status"/>.</summary>
    public CudaException(string call, int status)
        : base($"{call} failed with {CudaDriver.StatusName(status)} ({status})")
    {
        Call = call;
        Status = status;
    }

    /// <summary>The driver call that failed, with its arguments where they explain the failure.</summary>
    public string Call { get; }
    /// <summary>The CUresult status code.</summary>
    public int Status { get; }

    /// <summary>Throws for a non-zero status.</summary>
    public static void Check(int status, string call)
    {
        if (status != 0) throw new CudaException(call, status);
    }
}
