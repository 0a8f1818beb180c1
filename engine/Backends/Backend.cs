namespace AttentionEngine;

/// <summary>The attention implementations. Cuda joins when it lands.</summary>
public enum Backend
{
    /// <summary>The float64 oracle: plain loops, any CPU. Slow on purpose.</summary>
    Reference,

    /// <summary>Flash-style tiled online softmax in C# SIMD (AVX-512, AVX2 or 128-bit vectors), multi-threaded.</summary>
    Cpu,

    /// <summary>C# kernels on an ILGPU accelerator (CUDA, OpenCL or ILGPU's CPU simulator), sharing the CPU's functors.</summary>
    IlGpu,
}
