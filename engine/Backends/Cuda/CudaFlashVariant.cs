using System.Reflection;

namespace AttentionEngine.Kernels.Cuda;

/// <summary>The storage element a CUDA kernel variant reads and writes.</summary>
internal enum CudaElement
{
    F16,
    BF16,
    /// <summary>fp32, multiplied on tensor cores as 3xTF32 (near-fp32 accuracy).</summary>
    F32,
}

/// <summary>What every CUDA kernel image says the same way about its element type.</summary>
internal static class CudaElements
{
    /// <summary>The element a call on <typeparamref name="T"/> (float, Half or BFloat16) runs the kernels with.</summary>
    public static CudaElement Of<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? CudaElement.F32 : typeof(T) == typeof(BFloat16) ? CudaElement.BF16 : CudaElement.F16;

    /// <summary>Bytes per stored element.</summary>
    public static int Bytes(CudaElement element) => element == CudaElement.F32 ? 4 : 2;

    /// <summary>The entry points' suffix: f16, bf16 or f32.</summary>
    public static string Suffix(CudaElement element) => element switch { CudaElement.BF16 => "bf16", CudaElement.F32 => "f32", _ => "f16" };

    /// <summary>The kernels' element macros (both 0 for fp16).</summary>
    public static string[] Defines(CudaElement element) =>
        [$"-DAE_BF16={(element == CudaElement.BF16 ? 1 : 0)}", $"-DAE_F32={(element == CudaElement.F32 ? 1 : 0)}"];
}

/// <summary>
/// One compiled form of kernels/Cuda/flash_forward.cu: a native head dimension, an element type and the keys per K/V
/// tile. Every other D up to 256 runs on the next native one, zero-padded by the host. The tile is the kernel's
/// default unless the device's opt-in shared memory per block is too small for it (99 KiB on sm_86, sm_89 and sm_120
/// against 163 KiB on sm_80 and 227 KiB on sm_90): then the host halves it until the variant fits.
/// </summary>
internal readonly record struct CudaFlashVariant(int HeadDim, CudaElement Element, int KeysPerTile)
{
    /// <summary>The variant with the kernel's default tile (<see cref="DefaultKeysPerTile"/>).</summary>
    public CudaFlashVariant(int headDim, CudaElement element) : this(headDim, element, DefaultKeysPerTile(headDim, element)) { }

    /// <summary>The head dimensions compiled natively.</summary>
    public static IReadOnlyList<int> NativeHeadDims { get; } = [32, 64, 96, 128, 256];

    /// <summary>
    /// The opt-in shared memory per block of the device families the kernels target, largest first: every variant
    /// <see cref="For"/> picks on them is in <see cref="All"/> (compiled by CMake, the emulator and the compile tests).
    /// </summary>
    public static IReadOnlyList<(string Devices, int Bytes)> KnownSharedLimits { get; } =
    [
        ("sm_90, sm_100 (H100, B200)", 227 * 1024),
        ("sm_80, sm_87 (A100, Orin)", 163 * 1024),
        ("sm_86, sm_89, sm_120 (RTX 30, 40 and 50 series, L4, L40)", 99 * 1024),
    ];

    /// <summary>Every variant the known devices run: each native D and element type at each tile they need.</summary>
    public static IEnumerable<CudaFlashVariant> All =>
        NativeHeadDims.SelectMany(d => Enum.GetValues<CudaElement>().SelectMany(e =>
            KnownSharedLimits.Select(limit => For(d, e, limit.Bytes)))).Distinct();

    /// <summary>
    /// The variant serving head dimension <paramref name="headDim"/> (1 … 256) on a device whose blocks may opt in to
    /// <paramref name="sharedLimit"/> bytes of shared memory: the default tile, halved until it fits.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">headDim is above 256.</exception>
    /// <exception cref="NotSupportedException">not even the smallest tile fits <paramref name="sharedLimit"/>.</exception>
    public static CudaFlashVariant For(int headDim, CudaElement element, int sharedLimit = int.MaxValue)
    {
        int native = NativeHeadDims.FirstOrDefault(d => headDim <= d);
        if (native == 0)
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"The CUDA kernel takes head dimensions up to {NativeHeadDims[^1]}.");
        var variant = new CudaFlashVariant(native, element);
        while (variant.SharedBytes > sharedLimit && variant.KeysPerTile > variant.MinKeysPerTile)
            variant = variant with { KeysPerTile = variant.KeysPerTile / 2 };
        if (variant.SharedBytes > sharedLimit)
            throw new NotSupportedException($"The CUDA kernel for D = {native} ({element}) needs {variant.SharedBytes} bytes of shared memory per block "
                + $"even with {variant.KeysPerTile} keys per tile; this device allows {sharedLimit}.");
        return variant;
    }

    /// <summary>The kernel's own keys per tile (its Bc without AE_KEYS_PER_TILE): two K and V buffers fit an A100's 163 KiB.</summary>
    public static int DefaultKeysPerTile(int headDim, CudaElement element) => element == CudaElement.F32
        ? headDim <= 96 ? 64 : headDim <= 128 ? 32 : 16
        : headDim <= 128 ? 64 : 32;

    /// <summary>The smallest tile: one mma k of keys in P·V (8 for tf32, 16 for f16/bf16).</summary>
    private int MinKeysPerTile => Element == CudaElement.F32 ? 8 : 16;

    /// <summary>True when this variant's tile is smaller than the kernel's default (compiled with AE_KEYS_PER_TILE).</summary>
    public bool IsReducedTile => KeysPerTile != DefaultKeysPerTile(HeadDim, Element);

    public const int ThreadsPerBlock = 128;
    public const int RowsPerBlock = 64;

    /// <summary>Bytes per stored element.</summary>
    public int ElementBytes => CudaElements.Bytes(Element);

    /// <summary>Dynamic shared memory per block: the Q tile and two K and V buffers at the kernel's row pitches.</summary>
    public int SharedBytes
    {
        get
        {
            int qkPitch = HeadDim + (Element == CudaElement.F32 ? 4 : 8), vPitch = HeadDim + 8;
            return (RowsPerBlock * qkPitch + 2 * KeysPerTile * qkPitch + 2 * KeysPerTile * vPitch) * ElementBytes;
        }
    }

    private string Suffix => CudaElements.Suffix(Element);

    /// <summary>
    /// The kernel's name in the compiled image: one per variant (flash_forward_d128_bf16; flash_forward_d128_f32_k16
    /// for a reduced tile), so profiles tell them apart.
    /// </summary>
    public string EntryPoint => $"flash_forward_d{HeadDim}_{Suffix}" + (IsReducedTile ? $"_k{KeysPerTile}" : "");

    /// <summary>The CMake-built fatbin holding this variant.</summary>
    public string FatbinFile => $"{EntryPoint}.fatbin";

    /// <summary>
    /// NVRTC options for <paramref name="architecture"/> ("sm_80", "sm_90a", …). They ask for ptxas's report, so the
    /// backend's compile and the resource checks are one cached compile.
    /// </summary>
    public IReadOnlyList<string> CompileOptions(string architecture) =>
        [$"--gpu-architecture={architecture}", "-std=c++17", PtxasReport.VerboseOption, $"-DAE_HEAD_DIM={HeadDim}",
         .. CudaElements.Defines(Element),
         .. IsReducedTile ? [$"-DAE_KEYS_PER_TILE={KeysPerTile}"] : Array.Empty<string>()];

    /// <summary>
    /// Compiles this variant for <paramref name="architecture"/> with NVRTC and reads ptxas's report of it (registers,
    /// stack frame, spills). Needs NVRTC, not a GPU.
    /// </summary>
    public CudaKernelResources Resources(string architecture)
    {
        var output = CudaCompileCache.Default.Compile(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName,
            CompileOptions(architecture), out _);
        var report = PtxasReport.Parse(output.Log, EntryPoint)
            ?? throw new InvalidOperationException($"NVRTC's log for {EntryPoint} ({architecture}) has no ptxas report:\n{output.Log}");
        return new CudaKernelResources(EntryPoint, architecture, report.Registers, report.StackFrame, report.SpillStores, report.SpillLoads, SharedBytes);
    }

    public override string ToString() => $"flash_forward D{HeadDim} {Suffix}" + (IsReducedTile ? $" Bc{KeysPerTile}" : "");
}

/// <summary>kernels/Cuda/strided_copy.cu: one image holding both element widths.</summary>
internal static class CudaStridedCopy
{
    public const int ThreadsPerBlock = 256;

    /// <summary>The entry point moving elements of <paramref name="elementBytes"/> (2 or 4) bytes.</summary>
    public static string EntryPoint(int elementBytes) => elementBytes switch
    {
        2 => "strided_copy_b16",
        4 => "strided_copy_b32",
        _ => throw new ArgumentOutOfRangeException(nameof(elementBytes), elementBytes, "strided_copy moves 2- or 4-byte elements."),
    };

    public const string FatbinFile = "strided_copy.fatbin";

    /// <summary>NVRTC/nvcc options for <paramref name="architecture"/>.</summary>
    public static IReadOnlyList<string> CompileOptions(string architecture) => [$"--gpu-architecture={architecture}", "-std=c++17"];
}

/// <summary>The CUDA C++ sources embedded in this assembly.</summary>
internal static class CudaKernelSources
{
    public const string FlashForwardName = "flash_forward.cu";
    public const string StridedCopyName = "strided_copy.cu";

    public static string FlashForward => Read(FlashForwardName);

    public const string FlashBackwardName = "flash_backward.cu";

    /// <summary>
    /// flash_backward.cu with its <c>#include "flash_forward.cu"</c> replaced by that file (NVRTC is given no include
    /// path; g++ and nvcc read the include themselves).
    /// </summary>
    public static string FlashBackward
    {
        get
        {
            const string include = "#include \"flash_forward.cu\"";
            string source = Read(FlashBackwardName);
            int at = source.IndexOf(include, StringComparison.Ordinal);
            if (at < 0) throw new InvalidOperationException($"{FlashBackwardName} no longer includes {FlashForwardName}.");
            return string.Concat(source.AsSpan(0, at), FlashForward, "\n#line " + (source[..at].Count(c => c == '\n') + 1) + " \"" + FlashBackwardName + "\"\n",
                source.AsSpan(at + include.Length));
        }
    }

    /// <summary>flash_decode.cu: split-KV attention for few queries, and the merge of its splits.</summary>
    public static string FlashDecode => Read(CudaDecodeKernel.SourceName);

    /// <summary>strided_copy.cu: packs device tensors the flash kernel cannot address in place, and unpacks its output.</summary>
    public static string StridedCopy => Read(StridedCopyName);

    private static string Read(string name)
    {
        using var stream = typeof(CudaKernelSources).Assembly.GetManifestResourceStream($"AttentionEngine.Kernels.cuda.{name}")
            ?? throw new InvalidOperationException($"The CUDA source {name} is not embedded in {typeof(CudaKernelSources).Assembly.GetName().Name}.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
