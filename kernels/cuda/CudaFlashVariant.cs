using System.Reflection;

namespace AttentionEngine.Kernels.Cuda;

/// <summary>
/// One compiled form of kernels/cuda/flash_forward.cu: a native head dimension and an element type. Every other D up
/// to 256 runs on the next native one, zero-padded by the host.
/// </summary>
public readonly record struct CudaFlashVariant(int HeadDim, bool BFloat16)
{
    /// <summary>The head dimensions compiled natively.</summary>
    public static IReadOnlyList<int> NativeHeadDims { get; } = [32, 64, 96, 128, 256];

    /// <summary>Every variant: each native D, fp16 and bf16.</summary>
    public static IEnumerable<CudaFlashVariant> All =>
        NativeHeadDims.SelectMany(d => new[] { new CudaFlashVariant(d, false), new CudaFlashVariant(d, true) });

    /// <summary>The variant serving head dimension <paramref name="headDim"/> (1 … 256).</summary>
    public static CudaFlashVariant For(int headDim, bool bfloat16)
    {
        foreach (int d in NativeHeadDims)
            if (headDim <= d) return new(d, bfloat16);
        throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"The CUDA kernel takes head dimensions up to {NativeHeadDims[^1]}.");
    }

    public const int ThreadsPerBlock = 128;
    public const int RowsPerBlock = 64;

    /// <summary>Keys per K/V tile (as the kernel's Bc).</summary>
    public int KeysPerTile => HeadDim <= 128 ? 64 : 32;

    /// <summary>Dynamic shared memory per block: the Q tile and two K and V buffers, rows padded by 8 elements.</summary>
    public int SharedBytes => (RowsPerBlock + 4 * KeysPerTile) * (HeadDim + 8) * 2;

    /// <summary>The kernel's name in the compiled image: one per variant (flash_forward_d128_bf16), so profiles tell them apart.</summary>
    public string EntryPoint => $"flash_forward_d{HeadDim}_{(BFloat16 ? "bf16" : "f16")}";

    /// <summary>The CMake-built fatbin holding this variant.</summary>
    public string FatbinFile => $"{EntryPoint}.fatbin";

    /// <summary>NVRTC/nvcc options for <paramref name="architecture"/> ("sm_80", "sm_90a", …).</summary>
    public IReadOnlyList<string> CompileOptions(string architecture) =>
        [$"--gpu-architecture={architecture}", "-std=c++17", $"-DAE_HEAD_DIM={HeadDim}", $"-DAE_BF16={(BFloat16 ? 1 : 0)}"];

    public override string ToString() => $"flash_forward D{HeadDim} {(BFloat16 ? "bf16" : "f16")}";
}

/// <summary>The CUDA C++ sources embedded in this assembly.</summary>
public static class CudaKernelSources
{
    public const string FlashForwardName = "flash_forward.cu";

    public static string FlashForward => Read(FlashForwardName);

    private static string Read(string name)
    {
        using var stream = typeof(CudaKernelSources).Assembly.GetManifestResourceStream($"AttentionEngine.Kernels.cuda.{name}")
            ?? throw new InvalidOperationException($"The CUDA source {name} is not embedded in {typeof(CudaKernelSources).Assembly.GetName().Name}.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
