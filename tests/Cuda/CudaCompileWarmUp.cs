using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine.Tests;

/// <summary>
/// Fills the NVRTC compile cache with the kernel images the CUDA suites are about to load, on every core at once. The
/// CUDA collection runs alone (no other test beside it), and the backend compiles a variant at its first call, so
/// without this the collection's compiles ran one after another on one core while the other idled. Once per process.
/// </summary>
internal static class CudaCompileWarmUp
{
    private static readonly Lazy<bool> Done = new(() =>
    {
        if (NvrtcCompiler.UnavailableReason is not null || CudaDriver.UnavailableReason is not null) return false;
        string architecture;
        using (var device = CudaDevice.Open(0)) architecture = device.Architecture;
        var jobs = CudaFlashVariant.NativeHeadDims.SelectMany(d => Enum.GetValues<CudaElement>().SelectMany(e => new (string Source, string Name, IReadOnlyList<string> Options)[]
        {
            (CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName, new CudaFlashVariant(d, e).CompileOptions(architecture)),
            (CudaKernelSources.FlashBackward, CudaKernelSources.FlashBackwardName, new CudaBackwardVariant(d, e).CompileOptions(architecture)),
        })).ToArray();
        Parallel.ForEach(jobs, job => CudaCompileCache.Default.Cubin(job.Source, job.Name, job.Options, out _));
        return true;
    });

    /// <summary>Compiles (or finds cached) every default-tile forward and backward variant for device 0's architecture.</summary>
    public static void Ensure() => _ = Done.Value;
}
