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

/// <summary>
/// One compiled form of kernels/Cuda/flash_forward.cu: a native head dimension and an element type. Every other D up
/// to 256 runs on the next native one, zero-padded by the host.
/// </summary>
internal readonly record struct CudaFlashVariant(int HeadDim, CudaElement Element)
{
    /// <summary>The head dimensions compiled natively.</summary>
    public static IReadOnlyList<int> NativeHeadDims { get; } = [32, 64, 96, 128, 256];

    /// <summary>Every variant: each native D, each element type.</summary>
    public static IEnumerable<CudaFlashVariant> All =>
        NativeHeadDims.SelectMany(d => Enum.GetValues<CudaElement>().Select(e => new CudaFlashVariant(d, e)));

    /// <summary>The variant serving head dimension <paramref name="headDim"/> (1 … 256).</summary>
    public static CudaFlashVariant For(int headDim, CudaElement element)
    {
        foreach (int d in NativeHeadDims)
            if (headDim <= d) return new(d, element);
        throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"The CUDA kernel takes head dimensions up to {NativeHeadDims[^1]}.");
    }

    public const int ThreadsPerBlock = 128;
    public const int RowsPerBlock = 64;

    /// <summary>Bytes per stored element.</summary>
    public int ElementBytes => Element == CudaElement.F32 ? 4 : 2;

    /// <summary>Keys per K/V tile (the kernel's Bc): two K and two V buffers must fit beside the Q tile.</summary>
    public int KeysPerTile => Element == CudaElement.F32
        ? HeadDim <= 96 ? 64 : HeadDim <= 128 ? 32 : 16
        : HeadDim <= 128 ? 64 : 32;

    /// <summary>Dynamic shared memory per block: the Q tile and two K and V buffers at the kernel's row pitches.</summary>
    public int SharedBytes
    {
        get
        {
            int qkPitch = HeadDim + (Element == CudaElement.F32 ? 4 : 8), vPitch = HeadDim + 8;
            return (RowsPerBlock * qkPitch + 2 * KeysPerTile * qkPitch + 2 * KeysPerTile * vPitch) * ElementBytes;
        }
    }

    private string Suffix => Element switch { CudaElement.BF16 => "bf16", CudaElement.F32 => "f32", _ => "f16" };

    /// <summary>The kernel's name in the compiled image: one per variant (flash_forward_d128_bf16), so profiles tell them apart.</summary>
    public string EntryPoint => $"flash_forward_d{HeadDim}_{Suffix}";

    /// <summary>The CMake-built fatbin holding this variant.</summary>
    public string FatbinFile => $"{EntryPoint}.fatbin";

    /// <summary>NVRTC/nvcc options for <paramref name="architecture"/> ("sm_80", "sm_90a", …).</summary>
    public IReadOnlyList<string> CompileOptions(string architecture) =>
        [$"--gpu-architecture={architecture}", "-std=c++17", $"-DAE_HEAD_DIM={HeadDim}",
         $"-DAE_BF16={(Element == CudaElement.BF16 ? 1 : 0)}", $"-DAE_F32={(Element == CudaElement.F32 ? 1 : 0)}"];

    /// <summary>
    /// Compiles this variant for <paramref name="architecture"/> with NVRTC and reads ptxas's report of it (registers,
    /// stack frame, spills). Needs NVRTC, not a GPU.
    /// </summary>
    public CudaKernelResources Resources(string architecture)
    {
        var output = Bindings.Cuda.NvrtcCompiler.Compile(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName,
            [.. CompileOptions(architecture), PtxasReport.VerboseOption]);
        var report = PtxasReport.Parse(output.Log, EntryPoint)
            ?? throw new InvalidOperationException($"NVRTC's log for {EntryPoint} ({architecture}) has no ptxas report:\n{output.Log}");
        return new CudaKernelResources(EntryPoint, architecture, report.Registers, report.StackFrame, report.SpillStores, report.SpillLoads, SharedBytes);
    }

    public override string ToString() => $"flash_forward D{HeadDim} {Suffix}";
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
