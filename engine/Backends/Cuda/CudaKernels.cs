using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine;

/// <summary>
/// The flash kernel's variants loaded on one device: from a CMake-built fatbin when one is found
/// (ATTENTION_ENGINE_FATBIN_DIR, else cuda/ beside the application), otherwise compiled from the embedded source by
/// NVRTC for the device's architecture through the on-disk cache. Each variant loads once.
/// </summary>
internal sealed class CudaKernels(CudaDevice device) : IDisposable
{
    private readonly Dictionary<CudaFlashVariant, (CudaModule Module, CudaFunction Function)> _loaded = [];

    public CudaFunction Flash(CudaFlashVariant variant)
    {
        if (_loaded.TryGetValue(variant, out var hit)) return hit.Function;
        var module = CudaModule.Load(Image(variant));
        var function = module.Function(variant.EntryPoint);
        if (variant.SharedBytes > 48 * 1024) function.SetMaxDynamicSharedMemory(variant.SharedBytes);
        _loaded[variant] = (module, function);
        return function;
    }

    /// <summary>
    /// Why no kernel image can be had here (no CMake fatbins and no NVRTC), or null. The backend reports itself
    /// unavailable with this reason rather than failing at the first call.
    /// </summary>
    public static string? ImageUnavailableReason
    {
        get
        {
            if (NvrtcCompiler.UnavailableReason is not { } reason) return null;
            return CudaFlashVariant.All.Any(v => Prebuilt(v) is not null) ? null
                : $"no prebuilt kernels (CMake fatbins in ATTENTION_ENGINE_FATBIN_DIR or cuda/ beside the application) and {reason}";
        }
    }

    private static string? Prebuilt(CudaFlashVariant variant)
    {
        foreach (var directory in new[] { Environment.GetEnvironmentVariable("ATTENTION_ENGINE_FATBIN_DIR"), Path.Combine(AppContext.BaseDirectory, "cuda") })
            if (!string.IsNullOrEmpty(directory) && File.Exists(Path.Combine(directory, variant.FatbinFile)))
                return Path.Combine(directory, variant.FatbinFile);
        return null;
    }

    private byte[] Image(CudaFlashVariant variant)
    {
        if (Prebuilt(variant) is { } file) return File.ReadAllBytes(file);
        if (NvrtcCompiler.UnavailableReason is { } reason)
            throw new InvalidOperationException($"No prebuilt {variant.FatbinFile} and NVRTC cannot compile it: {reason}.");
        return CudaCompileCache.Default.Cubin(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName,
            variant.CompileOptions(device.Architecture), out _);
    }

    public void Dispose()
    {
        foreach (var (module, _) in _loaded.Values) module.Dispose();
        _loaded.Clear();
    }
}
