namespace AttentionEngine;

/// <summary>The attention implementations.</summary>
public enum Backend
{
    /// <summary>The float64 oracle: plain loops, any CPU. Slow on purpose.</summary>
    Reference,

    /// <summary>Flash-style tiled online softmax in C# SIMD (AVX-512, AVX2 or 128-bit vectors), multi-threaded.</summary>
    Cpu,

    /// <summary>C# kernels on an ILGPU accelerator (CUDA, OpenCL or ILGPU's CPU simulator), sharing the CPU's functors.</summary>
    IlGpu,

    /// <summary>Hand-written CUDA C++ on tensor cores (sm_80+), compiled by NVRTC at first use or loaded from the CMake fatbins.</summary>
    Cuda,

    /// <summary>
    /// A backend from another library: an <see cref="AttentionBackend"/> subclass that does not override
    /// <see cref="AttentionBackend.Kind"/>. Its <see cref="AttentionBackend.Name"/> identifies it
    /// (<see cref="Attention.Using(string)"/>).
    /// </summary>
    Custom,
}
