namespace AttentionEngine;

/// <summary>The attention implementations. Later backends (Cpu, Cuda, IlGpu) join as they land.</summary>
public enum Backend
{
    /// <summary>The float64 oracle: plain loops, any CPU. Slow on purpose.</summary>
    Reference,
}
