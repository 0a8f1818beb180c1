using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine;

/// <summary>
/// The flash kernel's variants and the strided copy loaded on one device: from a CMake-built fatbin when one is found
/// (ATTENTION_ENGINE_FATBIN_DIR, else cuda/ beside the application), otherwise compiled from the embedded source by
/// NVRTC for the device's architecture through the on-disk cache. Each image loads once.
/// </summary>
internal sealed class CudaKernels(CudaDevice device) : IDisposable
{
    private readonly Dictionary<CudaFlashVariant, (CudaModule Module, CudaFunction Function)> _loaded = [];
    private CudaModule? _copyModule;
    private readonly Dictionary<int, CudaFunction> _copies = [];
    private readonly Dictionary<CudaElement, (CudaModule Module, CudaFunction Split, CudaFunction Merge)> _decoders = [];
    private readonly Dictionary<CudaBackwardVariant, (CudaModule Module, CudaFunction Delta, CudaFunction KeyValue, CudaFunction Query)> _backward = [];

    /// <summary>The most dynamic shared memory a block may opt in to on this device: what sizes each variant's K/V tile.</summary>
    public int SharedLimit { get; } = device.Attribute(CudaDeviceAttribute.MaxSharedMemoryPerBlockOptin);

    public CudaFunction Flash(CudaFlashVariant variant)
    {
        if (_loaded.TryGetValue(variant, out var hit)) return hit.Function;
        var module = CudaModule.Load(Image(variant.FatbinFile, CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName,
            variant.CompileOptions(device.Architecture)));
        var function = module.Function(variant.EntryPoint);
        if (variant.SharedBytes > 48 * 1024) function.SetMaxDynamicSharedMemory(variant.SharedBytes);
        _loaded[variant] = (module, function);
        return function;
    }

    /// <summary>flash_backward.cu's three kernels for <paramref name="variant"/>: Delta, dK/dV and dQ.</summary>
    public (CudaFunction Delta, CudaFunction KeyValue, CudaFunction Query) Backward(CudaBackwardVariant variant)
    {
        if (_backward.TryGetValue(variant, out var hit)) return (hit.Delta, hit.KeyValue, hit.Query);
        var module = CudaModule.Load(Image(variant.FatbinFile, CudaKernelSources.FlashBackward, CudaKernelSources.FlashBackwardName,
            variant.CompileOptions(device.Architecture)));
        var loaded = (module, module.Function(variant.DeltaEntryPoint), module.Function(variant.KeyValueEntryPoint), module.Function(variant.QueryEntryPoint));
        if (variant.SharedBytes > 48 * 1024)
        {
            loaded.Item3.SetMaxDynamicSharedMemory(variant.SharedBytes);
            loaded.Item4.SetMaxDynamicSharedMemory(variant.SharedBytes);
        }
        _backward[variant] = loaded;
        return (loaded.Item2, loaded.Item3, loaded.Item4);
    }

    /// <summary>flash_decode.cu's split kernel and merge for <paramref name="element"/>.</summary>
    public (CudaFunction Split, CudaFunction Merge) Decode(CudaElement element)
    {
        if (_decoders.TryGetValue(element, out var hit)) return (hit.Split, hit.Merge);
        var module = CudaModule.Load(Image(CudaDecodeKernel.FatbinFile(element), CudaKernelSources.FlashDecode, CudaDecodeKernel.SourceName,
            CudaDecodeKernel.CompileOptions(device.Architecture, element)));
        var loaded = (module, module.Function(CudaDecodeKernel.EntryPoint(element)), module.Function(CudaDecodeKernel.MergeEntryPoint(element)));
        _decoders[element] = loaded;
        return (loaded.Item2, loaded.Item3);
    }

    /// <summary>The device's multiprocessors: how many blocks the decode kernel's splits aim to fill.</summary>
    public int Multiprocessors { get; } = device.Attribute(CudaDeviceAttribute.MultiprocessorCount);

    /// <summary>strided_copy.cu's entry point for elements of <paramref name="elementBytes"/> (2 or 4) bytes.</summary>
    public CudaFunction StridedCopy(int elementBytes)
    {
        if (_copies.TryGetValue(elementBytes, out var hit)) return hit;
        _copyModule ??= CudaModule.Load(Image(CudaStridedCopy.FatbinFile, CudaKernelSources.StridedCopy, CudaKernelSources.StridedCopyName,
            CudaStridedCopy.CompileOptions(device.Architecture)));
        return _copies[elementBytes] = _copyModule.Function(CudaStridedCopy.EntryPoint(elementBytes));
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
            return CudaFlashVariant.All.Any(v => Prebuilt(v.FatbinFile) is not null) ? null
                : $"no prebuilt kernels (CMake fatbins in ATTENTION_ENGINE_FATBIN_DIR or cuda/ beside the application) and {reason}";
        }
    }

    private static string? Prebuilt(string fatbinFile)
    {
        foreach (var directory in new[] { Environment.GetEnvironmentVariable("ATTENTION_ENGINE_FATBIN_DIR"), Path.Combine(AppContext.BaseDirectory, "cuda") })
            if (!string.IsNullOrEmpty(directory) && File.Exists(Path.Combine(directory, fatbinFile)))
                return Path.Combine(directory, fatbinFile);
        return null;
    }

    private static byte[] Image(string fatbinFile, string source, string sourceName, IReadOnlyList<string> options)
    {
        if (Prebuilt(fatbinFile) is { } file) return File.ReadAllBytes(file);
        if (NvrtcCompiler.UnavailableReason is { } reason)
            throw new InvalidOperationException($"No prebuilt {fatbinFile} and NVRTC cannot compile {sourceName}: {reason}.");
        return CudaCompileCache.Default.Cubin(source, sourceName, options, out _);
    }

    public void Dispose()
    {
        foreach (var (module, _) in _loaded.Values) module.Dispose();
        _loaded.Clear();
        foreach (var (module, _, _) in _decoders.Values) module.Dispose();
        _decoders.Clear();
        foreach (var (module, _, _, _) in _backward.Values) module.Dispose();
        _backward.Clear();
        _copies.Clear();
        _copyModule?.Dispose();
        _copyModule = null;
    }
}
