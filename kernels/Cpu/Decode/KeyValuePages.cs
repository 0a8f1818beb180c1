using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// Keys and values in a pool of fixed-size pages read through a block table (vLLM's paged layout), for the decode
/// kernel. The job's K and V views address the pool as if each sequence's pages lay in order from page 0; logical page n
/// of sequence b is physical page <c>Table[b · PagesPerSequence + n]</c>. One job per sequence whatever its table: runs of
/// pages as separate jobs had cost a task and a float64 merge each (a layer's decode step over 4096 keys in fragmented
/// 256-token pages at 0.83-0.85 of the contiguous cache's rate, 16-token pages at 0.23-0.24; now 0.95-0.97 and 0.79-0.86).
/// <list type="bullet">
/// <item>Keys and values read in place: the kernel keeps the blocks of contiguous keys and reads each block run by run,
/// at each run's shift (<see cref="Run"/>), so a fragmented table gives the contiguous cache's bits. A jump to another
/// run is invisible to the hardware prefetcher: the starts of runs a little ahead are requested (<see cref="RequestRunStarts{T}"/>).</item>
/// <item>Staged or guarded reads: blocks end where a run ends, each read through a copy of the job shifted to its run
/// (<see cref="At{T}"/>), so every path that addresses K and V reads the physical rows unchanged.</item>
/// </list>
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

    /// <summary>
    /// Keys from <paramref name="key"/> (below <paramref name="end"/>) in one run of consecutive pages of sequence
    /// <paramref name="batch"/>, and the run's <paramref name="shift"/> in key rows from its logical place to its physical one.
    /// </summary>
    public int Run(int batch, long key, long end, out long shift)
    {
        shift = Shift(batch, key);
        return KeysInRun(batch, key, (int)Math.Min(int.MaxValue, end - key));
    }

    /// <summary>Key rows from the logical place of key <paramref name="key"/> of sequence <paramref name="batch"/> to its physical one.</summary>
    private long Shift(int batch, long key)
    {
        long page = key / PageSize;
        return (Table[(long)batch * PagesPerSequence + page] - page) * PageSize;
    }

    /// <summary>Whether key <paramref name="key"/>, the first of a page, follows its predecessor in the pool (the previous page's successor).</summary>
    public bool Continues(int batch, long key)
    {
        int* table = Table + (long)batch * PagesPerSequence;
        long page = key / PageSize;
        return page > 0 && table[page] == table[page - 1] + 1;
    }

    /// <summary>
    /// Keys ahead of the block being read whose runs' starts are requested (<see cref="RequestRunStarts{T}"/>). A layer's
    /// decode step over 4096 keys in 16-token pages, every page a run of its own (bf16, E1024 H16 KV4, 2 threads):
    /// 0.66-0.73 of the contiguous cache's rate without requests, 0.80-0.86 at 128 keys, 0.77-0.83 at 256 and 512.
    /// </summary>
    public const int RequestAhead = 128;

    /// <summary>
    /// Requests the first lines of every run that starts in [<paramref name="requested"/>, <paramref name="until"/>)
    /// (up to a block of keys each), then moves <paramref name="requested"/> to <paramref name="until"/>.
    /// </summary>
    public void RequestRunStarts<T>(in CpuAttentionJob<T> job, int batch, int kvHead, ref long requested, long until, long keyEnd) where T : unmanaged
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported) // line requests (prefetcht0) are x86's
        {
            for (long start = (requested + PageSize - 1) / PageSize * PageSize; start < until; start += PageSize)
            {
                if (Continues(batch, start)) continue;
                long shift = Shift(batch, start);
                int count = (int)Math.Min(Math.Min(PageSize, CpuKeyBlock.Keys), keyEnd - start);
                KeyValuePrefetch.Rows(Shifted(job.K, shift), batch, kvHead, start, count, job.HeadDim);
                KeyValuePrefetch.Rows(Shifted(job.V, shift), batch, kvHead, start, count, job.ValueDim);
            }
        }
        requested = Math.Max(requested, until);
    }

    /// <summary>The job with K and V shifted so that sequence <paramref name="batch"/>'s keys of the run holding <paramref name="firstKey"/> read from its physical pages.</summary>
    public CpuAttentionJob<T> At<T>(in CpuAttentionJob<T> job, int batch, long firstKey) where T : unmanaged
    {
        long keys = Shift(batch, firstKey);
        return job with { K = Shifted(job.K, keys), V = Shifted(job.V, keys), Pages = default };
    }

    private static RawStrided4<T> Shifted<T>(in RawStrided4<T> rows, long keys) where T : unmanaged =>
        new(rows.Base + (nint)keys * rows.Stride2, rows.Length0, rows.Length1, rows.Length2, rows.Length3, rows.Stride0, rows.Stride1, rows.Stride2, rows.Stride3);
}
