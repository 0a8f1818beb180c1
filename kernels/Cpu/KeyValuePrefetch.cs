using System.Runtime.Intrinsics.X86;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Requests a key block's K or V cache lines before a kernel reads them. The GEMMs of a tile are bound by compute, but
/// their first read of a block that is not in cache stalls on memory latency: demand loads and the hardware prefetcher
/// keep too few misses in flight. Requested one step ahead, the lines arrive while the other GEMM computes.
/// </summary>
internal static unsafe class KeyValuePrefetch
{
    /// <summary>The block's keys as the forward reads them: the widened float copy if the call made one, else the caller's rows.</summary>
    public static void Keys<T>(in CpuAttentionJob<T> job, int batch, int kvHead, long firstKey, int keyCount) where T : unmanaged
    {
        if (!Sse.IsSupported || keyCount <= 0) return;
        if (!job.WideK.IsEmpty) Rows(job.WideK, batch, kvHead, firstKey, keyCount, job.HeadDim);
        else if (job.Int8.IsActive) Rows(job.Int8.K, batch, kvHead, firstKey, keyCount, job.HeadDim);
        else Rows(job.K, batch, kvHead, firstKey, keyCount, job.HeadDim);
    }

    /// <summary>The block's values as the forward reads them (see <see cref="Keys{T}"/>).</summary>
    public static void Values<T>(in CpuAttentionJob<T> job, int batch, int kvHead, long firstKey, int keyCount) where T : unmanaged
    {
        if (!Sse.IsSupported || keyCount <= 0) return;
        if (!job.WideV.IsEmpty) Rows(job.WideV, batch, kvHead, firstKey, keyCount, job.ValueDim);
        else if (job.Int8.IsActive) Rows(job.Int8.V, batch, kvHead, firstKey, keyCount, job.ValueDim);
        else Rows(job.V, batch, kvHead, firstKey, keyCount, job.ValueDim);
    }

    /// <summary>Every line of rows [firstKey, firstKey + keyCount) of one head, <paramref name="width"/> elements each.</summary>
    public static void Rows<TElement>(RawStrided4<TElement> tensor, int batch, int head, long firstKey, int keyCount, int width)
        where TElement : unmanaged
    {
        if (!Sse.IsSupported || width <= 0) return;
        // A last dimension strided wider than a line would have every line of the span requested for one element.
        long elementStride = tensor.Stride3 * sizeof(TElement);
        if (elementStride <= 0 || elementStride > 64) return;
        long spanBytes = ((width - 1) * elementStride) + sizeof(TElement);
        for (int j = 0; j < keyCount; j++)
        {
            byte* row = (byte*)&tensor.Base[tensor.Offset(batch, head, (nint)(firstKey + j), 0)];
            for (long line = 0; line < spanBytes; line += 64) Sse.Prefetch0(row + line);
            Sse.Prefetch0(row + spanBytes - 1); // the last line when the row does not start on a line
        }
    }
}
