namespace AttentionEngine.Kernels.Cuda;

/// <summary>
/// One compiled form of kernels/Cuda/flash_backward.cu (its Delta, dK/dV and dQ kernels): a native head dimension,
/// an element type and Bc, the query tile of the dK/dV kernel and the key tile of the dQ kernel. Both kernels hold a
/// 64-row block of two operands (K and V, or Q and dO) and two buffers of two Bc-row tiles in shared memory; the tile
/// is the default below unless the device's opt-in shared memory per block is too small, and is then halved until
/// the variant fits (fp32 at D = 256 fits no 99 KiB device: <see cref="For"/> says so).
/// </summary>
internal readonly record struct CudaBackwardVariant(int HeadDim, CudaElement Element, int KeysPerTile)
{
    /// <summary>The variant with the default tile.</summary>
    public CudaBackwardVariant(int headDim, CudaElement element) : this(headDim, element, DefaultKeysPerTile(headDim, element)) { }

    /// <summary>
    /// The default tile: the largest with which ptxas (NVRTC 11.2, sm_90) spills little or nothing, since the dK/dV
    /// kernel holds two D-wide accumulators (dK, dV) per thread beside two score tiles: 32 keys up to D = 64 and 16
    /// above for fp16/bf16; 16 up to D = 96 and 8 above for fp32 (3xTF32's split operands take twice the registers).
    /// Tiles twice these spill 16-500 bytes per thread. Untimed: a GPU may prefer a larger tile that spills a little.
    /// </summary>
    public static int DefaultKeysPerTile(int headDim, CudaElement element) => element == CudaElement.F32
        ? headDim <= 96 ? 16 : 8
        : headDim <= 64 ? 32 : 16;

    /// <summary>Every variant the known device families run (<see cref="CudaFlashVariant.KnownSharedLimits"/>).</summary>
    public static IEnumerable<CudaBackwardVariant> All =>
        CudaFlashVariant.NativeHeadDims.SelectMany(d => Enum.GetValues<CudaElement>().SelectMany(e =>
            CudaFlashVariant.KnownSharedLimits.Select(limit => TryFor(d, e, limit.Bytes)).OfType<CudaBackwardVariant>())).Distinct();

    /// <summary>
    /// The variant serving head dimension <paramref name="headDim"/> (1 … 256) on a device whose blocks may opt in to
    /// <paramref name="sharedLimit"/> bytes of shared memory.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">headDim is above 256.</exception>
    /// <exception cref="NotSupportedException">not even the smallest tile fits <paramref name="sharedLimit"/>.</exception>
    public static CudaBackwardVariant For(int headDim, CudaElement element, int sharedLimit = int.MaxValue)
    {
        int native = CudaFlashVariant.NativeHeadDims.FirstOrDefault(d => headDim <= d);
        if (native == 0)
            throw new ArgumentOutOfRangeException(nameof(headDim), headDim, $"The CUDA backward takes head dimensions up to {CudaFlashVariant.NativeHeadDims[^1]}.");
        return TryFor(native, element, sharedLimit) ?? throw new NotSupportedException(
            $"The CUDA backward for D = {native} ({element}) needs {new CudaBackwardVariant(native, element, MinKeysPerTile(element)).SharedBytes} bytes "
            + $"of shared memory per block even with {MinKeysPerTile(element)} keys per tile; this device allows {sharedLimit}. Use the Cpu backend's backward.");
    }

    private static CudaBackwardVariant? TryFor(int native, CudaElement element, int sharedLimit)
    {
        var variant = new CudaBackwardVariant(native, element);
        while (variant.SharedBytes > sharedLimit && variant.KeysPerTile > MinKeysPerTile(element))
            variant = variant with { KeysPerTile = variant.KeysPerTile / 2 };
        return variant.SharedBytes <= sharedLimit ? variant : null;
    }

    /// <summary>The smallest tile: one mma k (8 for tf32, 16 for f16/bf16).</summary>
    private static int MinKeysPerTile(CudaElement element) => element == CudaElement.F32 ? 8 : 16;

    public const int ThreadsPerBlock = CudaFlashVariant.ThreadsPerBlock;

    /// <summary>Keys per dK/dV block and query rows per dQ block (four warps of 16).</summary>
    public const int RowsPerBlock = CudaFlashVariant.RowsPerBlock;

    /// <summary>Rows of [B, H, Lq] per Delta block: one warp each.</summary>
    public const int DeltaRowsPerBlock = ThreadsPerBlock / 32;

    /// <summary>Bytes per stored element.</summary>
    public int ElementBytes => CudaElements.Bytes(Element);

    /// <summary>Dynamic shared memory of the dK/dV and dQ kernels: two 64-row blocks and two buffers of two Bc-row tiles, at one row pitch.</summary>
    public int SharedBytes => (2 * RowsPerBlock + 4 * KeysPerTile) * (HeadDim + (Element == CudaElement.F32 ? 4 : 8)) * ElementBytes;

    private string Name => $"d{HeadDim}_{CudaElements.Suffix(Element)}_k{KeysPerTile}";

    /// <summary>Delta_i = dO_i · O_i per row.</summary>
    public string DeltaEntryPoint => $"flash_backward_delta_{Name}";

    /// <summary>dK and dV per block of keys.</summary>
    public string KeyValueEntryPoint => $"flash_backward_kv_{Name}";

    /// <summary>dQ (and the bias gradient's dS) per block of query rows.</summary>
    public string QueryEntryPoint => $"flash_backward_q_{Name}";

    /// <summary>The CMake-built fatbin holding this variant's three kernels.</summary>
    public string FatbinFile => $"flash_backward_{Name}.fatbin";

    /// <summary>NVRTC options for <paramref name="architecture"/>: the forward's macros, the tile always explicit, ptxas's report asked for.</summary>
    public IReadOnlyList<string> CompileOptions(string architecture) =>
        [$"--gpu-architecture={architecture}", "-std=c++17", PtxasReport.VerboseOption, $"-DAE_HEAD_DIM={HeadDim}",
         .. CudaElements.Defines(Element), $"-DAE_KEYS_PER_TILE={KeysPerTile}"];

    /// <summary>What ptxas reports for the three kernels of this variant compiled for <paramref name="architecture"/> (NVRTC, no GPU needed).</summary>
    public IEnumerable<CudaKernelResources> Resources(string architecture)
    {
        var output = CudaCompileCache.Default.Compile(CudaKernelSources.FlashBackward, CudaKernelSources.FlashBackwardName, CompileOptions(architecture), out _);
        foreach (var (entry, shared) in new[] { (DeltaEntryPoint, 0), (KeyValueEntryPoint, SharedBytes), (QueryEntryPoint, SharedBytes) })
        {
            var report = PtxasReport.Parse(output.Log, entry)
                ?? throw new InvalidOperationException($"NVRTC's log for {entry} ({architecture}) has no ptxas report:\n{output.Log}");
            yield return new CudaKernelResources(entry, architecture, report.Registers, report.StackFrame, report.SpillStores, report.SpillLoads, shared);
        }
    }

    public override string ToString() => $"flash_backward D{HeadDim} {CudaElements.Suffix(Element)} Bc{KeysPerTile}";
}
