namespace AttentionEngine;

/// <summary>The attention implementations. Later backends (Cpu, Cuda, IlGpu) join as they land.</summary>
public enum Backend
{
    /// <summary>The float64 oracle: plain loops, any CPU. Slow on purpose.</summary>
    Reference,

    /// <summary>Flash-style tiled online softmax in C# SIMD (AVX-512, AVX2 or 128-bit vectors), multi-threaded.</summary>
    Cpu,
}
