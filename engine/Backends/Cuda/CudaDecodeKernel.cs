namespace AttentionEngine.Kernels.Cuda;

/// <summary>
/// kernels/Cuda/flash_decode.cu: split-KV attention for few queries (Lq ≤ <see cref="MaxQueryLength"/>), one image
/// per element type holding the split kernel and the merge. The host runs it for calls whose only masks are the band
/// and the key length; the others take the flash kernel.
/// </summary>
internal static class CudaDecodeKernel
{
    public const string SourceName = "flash_decode.cu";
    public const int ThreadsPerBlock = 128;
    /// <summary>Query rows per block (a KV head's group of heads times Lq, in chunks of this many): each lane holds
    /// its columns of every row's query and output in registers.</summary>
    public const int RowsPerBlock = 4;
    /// <summary>A split's keys are a multiple of this many.</summary>
    public const int KeysPerStep = 64;
    /// <summary>The kernel's Shared union: the key loop's ring of cp.async stages, then the lane groups' partial outputs and row statistics (48 KiB, no opt-in needed).</summary>
    public const int SharedBytes = 49152;
    /// <summary>The longest query the decode kernel takes; longer ones run the flash kernel's 64-row tiles.</summary>
    public const int MaxQueryLength = 8;
    /// <summary>The most columns (head dimension) the kernel's shared Q rows hold.</summary>
    public const int MaxHeadDim = 256;

    public static string EntryPoint(CudaElement element) => $"flash_decode_{CudaElements.Suffix(element)}";

    public static string MergeEntryPoint(CudaElement element) => $"flash_decode_merge_{CudaElements.Suffix(element)}";

    /// <summary>The CMake-built fatbin holding both entry points for <paramref name="element"/>.</summary>
    public static string FatbinFile(CudaElement element) => $"{EntryPoint(element)}.fatbin";

    /// <summary>NVRTC options for <paramref name="architecture"/>, with ptxas's report (see <see cref="CudaFlashVariant.CompileOptions"/>).</summary>
    public static IReadOnlyList<string> CompileOptions(string architecture, CudaElement element) =>
        [$"--gpu-architecture={architecture}", "-std=c++17", PtxasReport.VerboseOption, .. CudaElements.Defines(element)];

    /// <summary>
    /// Compiles the decode image for <paramref name="element"/> with NVRTC and reads ptxas's report of its split
    /// kernel and its merge. Needs NVRTC, not a GPU.
    /// </summary>
    public static IEnumerable<CudaKernelResources> Resources(string architecture, CudaElement element)
    {
        var output = CudaCompileCache.Default.Compile(CudaKernelSources.FlashDecode, SourceName, CompileOptions(architecture, element), out _);
        foreach (var (entry, shared) in new[] { (EntryPoint(element), SharedBytes), (MergeEntryPoint(element), 0) })
        {
            var report = PtxasReport.Parse(output.Log, entry)
                ?? throw new InvalidOperationException($"NVRTC's log for {entry} ({architecture}) has no ptxas report:\n{output.Log}");
            yield return new CudaKernelResources(entry, architecture, report.Registers, report.StackFrame, report.SpillStores, report.SpillLoads, shared);
        }
    }

    /// <summary>Row chunks per KV head: the group's heads times Lq, <see cref="RowsPerBlock"/> at a time.</summary>
    public static int RowChunks(AttentionShape shape) =>
        (shape.QueryHeads / shape.KvHeads * shape.QueryLength + RowsPerBlock - 1) / RowsPerBlock;

    /// <summary>
    /// Splits of the keys: enough blocks for four per multiprocessor (the loads in flight that keep the memory busy),
    /// each split a whole number of steps; one split when the heads alone fill the device. The choice depends on the
    /// shape's query rows (batch · heads · Lq), key length and the device only: a row's bits depend on its split's
    /// keys alone, so they do not change from run to run on one device, and a GQA call gives the same bits as the
    /// same call with its K and V heads repeated (the blocks are counted as if every group filled its row chunks).
    /// </summary>
    public static (int Splits, int KeysPerSplit) Split(AttentionShape shape, int multiprocessors)
    {
        long blocks = Math.Max(1, ((long)shape.Batch * shape.QueryHeads * shape.QueryLength + RowsPerBlock - 1) / RowsPerBlock);
        int steps = Math.Max(1, (shape.KeyLength + KeysPerStep - 1) / KeysPerStep);
        long wanted = Math.Max(1, (4L * multiprocessors + blocks - 1) / blocks);
        int splits = (int)Math.Min(Math.Min(wanted, steps), 65535);
        int stepsPerSplit = (steps + splits - 1) / splits;
        splits = (steps + stepsPerSplit - 1) / stepsPerSplit;
        return (splits, stepsPerSplit * KeysPerStep);
    }

    /// <summary>
    /// Why the decode kernels' grids cannot cover the call (split kernel x: batch·KV heads, z: row chunks; merge x: one
    /// thread per output of up to <see cref="MaxHeadDim"/> columns); null when they can.
    /// </summary>
    public static string? GridLimit(AttentionShape shape) =>
        (long)shape.Batch * shape.KvHeads > int.MaxValue || RowChunks(shape) > 65535
            || (long)shape.Batch * shape.QueryHeads * shape.QueryLength * MaxHeadDim / ThreadsPerBlock > int.MaxValue
            ? $"the decode grid covers batch·KV heads ≤ {int.MaxValue}, (heads / KV heads)·Lq ≤ {65535 * RowsPerBlock} and batch·heads·Lq ≤ {(long)int.MaxValue * ThreadsPerBlock / MaxHeadDim}"
            : null;
}
