using System.Runtime.Intrinsics.X86;
using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Requests a key block's K and V cache lines before a kernel reads them, for calls whose K and V come from memory on
/// every call (<see cref="Worthwhile{T}"/>): demand loads and the hardware prefetcher keep too few misses in flight.
/// <list type="bullet">
/// <item>Decode streams each byte of K and V once and is bound by memory. It requests a whole block before using it. On
/// the 2-core Zen 4, B1 H32 Lk4096 D128 f32 went from 19.0 to 23-25 GB/s; one or two blocks further ahead measured no
/// better.</item>
/// <item>The forward's GEMMs are bound by compute, but each one's first read of a block from memory stalls. A step
/// requests its values before its score GEMM and the next step's keys before its value GEMM, so each block arrives
/// while the other GEMM runs.</item>
/// </list>
/// Where K and V stay in cache between calls, the requests cost more than they hide. On a 2-core Sapphire Rapids, where a
/// decode's 4-32 MB of K and V stay resident, the burst of requests took half the profile, and calls ran 1.3-1.5x
/// faster without it (B1 H32 Lk128 and Lk512 D128). Forward calls of 1-2 MB ran 3-5% slower with it (B1 H8 N128 D64).
/// </summary>
internal static unsafe class KeyValuePrefetch
{
    /// <summary>Bytes a call touches (Q, K, V and the output) from which requests pay: above any last-level cache of 2-8 cores.</summary>
    public const long MinimumBytes = 64L << 20;

    /// <summary>
    /// For calls planned on this thread: 1 never requests, 2 always does, 0 decides by size. Read once when a call is
    /// planned and kept in its job (<see cref="CpuAttentionJob{T}.Prefetch"/>). Tests use it; results do not depend on it.
    /// </summary>
    [ThreadStatic] internal static int Override;

    /// <summary>
    /// Whether the call touches so many bytes that its K and V come from memory on every call (or the job's setting says).
    /// Q and the output count too: a forward call of 32 MB of K and V and as much of Q and output (B128 H8 N64 D64)
    /// evicts its own K and V, and ran 0.97x (causal 0.89x) the time with the requests.
    /// </summary>
    public static bool Worthwhile<T>(in CpuAttentionJob<T> job) where T : unmanaged
    {
        if (job.Prefetch != 0) return job.Prefetch == 2;
        long keyValueBytes = (long)job.Batch * job.KvHeads * job.KeyLength * (job.HeadDim + job.ValueDim) * (job.Int8.IsActive ? 1 : sizeof(T));
        long queryOutputBytes = (long)job.Batch * job.QueryHeads * job.QueryLength * (job.HeadDim + job.ValueDim) * sizeof(T);
        return keyValueBytes + queryOutputBytes >= MinimumBytes;
    }

    /// <summary>The block's keys as the kernels read them: the call's float copy if it made one, else the caller's rows.</summary>
    public static void Keys<T>(in CpuAttentionJob<T> job, int batch, int kvHead, long firstKey, int keyCount) where T : unmanaged
    {
        if (!Sse.IsSupported || keyCount <= 0) return;
        if (!job.WideK.IsEmpty) Rows(job.WideK, batch, kvHead, firstKey, keyCount, job.HeadDim);
        else if (job.Int8.IsActive) Rows(job.Int8.K, batch, kvHead, firstKey, keyCount, job.HeadDim);
        else Rows(job.K, batch, kvHead, firstKey, keyCount, job.HeadDim);
    }

    /// <summary>The block's values as the kernels read them (see <see cref="Keys{T}"/>).</summary>
    public static void Values<T>(in CpuAttentionJob<T> job, int batch, int kvHead, long firstKey, int keyCount) where T : unmanaged
    {
        if (!Sse.IsSupported || keyCount <= 0) return;
        if (!job.WideV.IsEmpty) Rows(job.WideV, batch, kvHead, firstKey, keyCount, job.ValueDim);
        else if (job.Int8.IsActive) Rows(job.Int8.V, batch, kvHead, firstKey, keyCount, job.ValueDim);
        else Rows(job.V, batch, kvHead, firstKey, keyCount, job.ValueDim);
    }

    /// <summary>Every line of rows [firstKey, firstKey + keyCount) of one head, <paramref name="width"/> elements each.</summary>
    internal static void Rows<TElement>(RawStrided4<TElement> tensor, int batch, int head, long firstKey, int keyCount, int width)
        where TElement : unmanaged
    {
        if (width <= 0) return;
        // A last dimension strided wider than a line would have every line of the span requested for one element.
        long elementStride = tensor.Stride3 * sizeof(TElement);
        if (elementStride <= 0 || elementStride > 64) return;
        long spanBytes = ((width - 1) * elementStride) + sizeof(TElement);
        // Rows that follow each other in memory (a cache's rows, a page of a paged pool) are one span: a request per line
        // instead of per row (a row of 64 bf16 is two lines, and took three requests and an offset of its own).
        if (tensor.Stride2 * sizeof(TElement) == spanBytes)
        {
            CacheLines.Request(&tensor.Base[tensor.Offset(batch, head, (nint)firstKey, 0)], spanBytes * keyCount);
            return;
        }
        for (int j = 0; j < keyCount; j++) CacheLines.Request(&tensor.Base[tensor.Offset(batch, head, (nint)(firstKey + j), 0)], spanBytes);
    }
}
