using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// Keys and values in a pool of fixed-size pages read through a block table (vLLM's paged layout), for the decode
/// kernel. The job's K and V views address the pool as if each sequence's pages lay in order from page 0; logical page n
/// of sequence b is physical page <c>Table[b · PagesPerSequence + n]</c>. The kernel cuts its key blocks where a run of
/// consecutive pages ends and reads each block through a copy of the job shifted to the run (<see cref="At{T}"/>), so every path that
/// addresses K and V (in place, staged, prefetched, guarded) reads the physical rows unchanged. One job per sequence
/// whatever its table: runs of pages as separate jobs cost a task and a float64 merge each.
/// </summary>
internal readonly unsafe struct KeyValuePages
{
    public KeyValuePages(int* table, int pagesPerSequence, int pageSize)
    {
        Table = table;
        PagesPerSequence = pagesPerSequence;
        PageSize = pageSize;
    }

    /// <summary>Physical page numbers, [batch, PagesPerSequence] row by row; null when K and V are not paged.</summary>
    public readonly int* Table;
    public readonly int PagesPerSequence;
    public readonly int PageSize;

    public bool IsActive => Table != null;

    /// <summary>Most queries a paged job takes: the decode kernel's.</summary>
    public const int MaxQueries = DecodeKernel<float, Simd.Vector128Ops, System.Runtime.Intrinsics.Vector128<float>, KeepAll, IdentityScore>.MaxQueries;

    /// <summary>
    /// Keys of sequence <paramref name="batch"/>'s block starting at <paramref name="firstKey"/>, at most <paramref
    /// name="most"/>, that stay in one run of consecutive physical pages (one page, or more: a table in order reads in
    /// the blocks of contiguous keys, the same bits).
    /// </summary>
    public int KeysInRun(int batch, long firstKey, int most)
    {
        int* table = Table + (long)batch * PagesPerSequence;
        long page = firstKey / PageSize, end = (page + 1) * PageSize;
        while (end - firstKey < most && page + 1 < PagesPerSequence && table[page + 1] == table[page] + 1)
        {
            page++;
            end += PageSize;
        }
        return (int)Math.Min(most, end - firstKey);
    }

    /// <summary>The job with K and V shifted so that sequence <paramref name="batch"/>'s keys of the run holding <paramref name="firstKey"/> read from its physical pages.</summary>
    public CpuAttentionJob<T> At<T>(in CpuAttentionJob<T> job, int batch, long firstKey) where T : unmanaged
    {
        long page = firstKey / PageSize;
        long keys = (Table[(long)batch * PagesPerSequence + page] - page) * PageSize;
        return job with { K = Shifted(job.K, keys), V = Shifted(job.V, keys) };
    }

    private static RawStrided4<T> Shifted<T>(in RawStrided4<T> rows, long keys) where T : unmanaged =>
        new(rows.Base + (nint)keys * rows.Stride2, rows.Length0, rows.Length1, rows.Length2, rows.Length3, rows.Stride0, rows.Stride1, rows.Stride2, rows.Stride3);
}
