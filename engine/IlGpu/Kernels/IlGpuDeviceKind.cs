namespace AttentionEngine.Kernels.IlGpu;

/// <summary>Which ILGPU accelerator a backend runs on.</summary>
public enum IlGpuDeviceKind
{
    /// <summary>CUDA if a device is present, else OpenCL, else the CPU accelerator.</summary>
    Auto,
    Cuda,
    OpenCL,

    /// <summary>ILGPU's CPU accelerator: one OS thread per simulated GPU thread. For correctness, never for speed.</summary>
    Cpu,
}
