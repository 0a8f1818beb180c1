using System.Numerics.Tensors;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Kernels;

namespace AttentionEngine.Bench.Layer;

/// <summary>
/// One decode step of a layer over a filled KV cache: each timed call appends one token per row, then the cache is
/// truncated back, so every step reads the same number of cached tokens. With a page size, the same layer steps a
/// contiguous <see cref="KeyValueCache{T}"/> and a <see cref="PagedKeyValueCache{T}"/> holding the same tokens call by
/// call in turn, so the machine's drift (up to 2x within minutes here) falls on both alike and their ratio means
/// something. A third cache, paged too, holds the same tokens in a fragmented table: each sequence was filled a page at a
/// time in turn with a neighbour sequence, so no two of its pages are consecutive (a serving pool's usual state).
/// </summary>
internal static class DecodeTiming
{
    /// <returns>
    /// Median seconds per step over the contiguous cache, over the paged ones (in order, fragmented; null without a page
    /// size), cached K+V bytes and weight bytes one step reads.
    /// </returns>
    /// <param name="pageSize">0 for the contiguous cache alone, else the page size of the paged caches timed beside it.</param>
    public static (double Contiguous, double? Paged, double? Fragmented, double CacheBytes, double WeightBytes) Time<TWeight, TCache>(DecodeCase c,
        LayerSettings settings, int pageSize)
        where TWeight : unmanaged where TCache : unmanaged
    {
        int e = c.EmbedDim, hd = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        var random = new Random(11);
        TWeight[] Matrix(int rows, int columns) =>
            Enumerable.Range(0, rows * columns).Select(_ => ElementTypes.FromSingle<TWeight>((float)((random.NextDouble() * 2 - 1) / Math.Sqrt(columns)))).ToArray();
        TWeight[] Vector(int n) => Enumerable.Range(0, n).Select(_ => ElementTypes.FromSingle<TWeight>((float)(random.NextDouble() - 0.5) / 10)).ToArray();
        using var layer = new MultiHeadAttention<TWeight>(new MultiHeadAttentionConfig
        {
            EmbedDim = e, Heads = c.Heads, KvHeads = c.KvHeads, Rotary = new RotaryEmbedding(RotaryLayout.HalfSplit),
        });
        layer.Load(new ReadOnlyTensorSpan<TWeight>(Matrix(hd, e), [hd, e], []), new ReadOnlyTensorSpan<TWeight>(Matrix(kv, e), [kv, e], []),
            new ReadOnlyTensorSpan<TWeight>(Matrix(kv, e), [kv, e], []), new ReadOnlyTensorSpan<TWeight>(Matrix(e, hd), [e, hd], []),
            Vector(hd), Vector(kv), Vector(kv), Vector(e));
        using var contiguous = new KeyValueCache<TCache>(c.Batch, c.KvHeads, c.HeadDim, c.Cached + 1);
        using var paged = pageSize == 0 ? null
            : new PagedKeyValueCache<TCache>(c.Batch * ((c.Cached + pageSize) / pageSize + 1), pageSize, c.Batch, c.KvHeads, c.HeadDim);
        // Sequences 0..B-1 are timed; B..2B-1 are the neighbours that took every other page.
        using var fragmented = pageSize == 0 ? null
            : new PagedKeyValueCache<TCache>(2 * c.Batch * ((c.Cached + pageSize) / pageSize + 1), pageSize, 2 * c.Batch, c.KvHeads, c.HeadDim);
        int threads = settings.Threads;
        int[] timed = Enumerable.Range(0, c.Batch).ToArray(), neighbours = Enumerable.Range(c.Batch, c.Batch).ToArray();
        MultiHeadAttentionOptions Options(int[]? sequences = null) => new() { MaxDegreeOfParallelism = threads, CacheSequences = sequences }; // a ref struct: made per call, not captured

        // The same prompt into both caches, so both steps attend over the same keys.
        using (var prompt = TensorRandom.Create<float>(3, ValueDistribution.Normal, c.Batch, c.Cached, e))
        using (var promptOutput = NativeTensor<float>.Zeros(c.Batch, c.Cached, e))
        {
            layer.Forward(prompt.AsReadOnlyTensorSpan(), promptOutput.AsTensorSpan(), contiguous, Options());
            if (paged is not null) layer.Forward(prompt.AsReadOnlyTensorSpan(), promptOutput.AsTensorSpan(), paged, Options());
            if (fragmented is not null)
                for (int t = 0; t < c.Cached; t += pageSize)
                {
                    int n = Math.Min(pageSize, c.Cached - t);
                    var chunk = TensorLayout.ReadOnlyView<float>(prompt.Storage[(t * e)..], [c.Batch, n, e], [(nint)c.Cached * e, e, 1]);
                    var chunkOutput = TensorLayout.View(promptOutput.Storage[(t * e)..], [c.Batch, n, e], [(nint)c.Cached * e, e, 1]);
                    layer.Forward(chunk, chunkOutput, fragmented, Options(timed));
                    layer.Forward(chunk, chunkOutput, fragmented, Options(neighbours));
                }
        }
        using var token = TensorRandom.Create<float>(4, ValueDistribution.Normal, c.Batch, 1, e);
        using var output = NativeTensor<float>.Zeros(c.Batch, 1, e);
        var steps = new List<Action>
        {
            () =>
            {
                layer.Forward(token.AsReadOnlyTensorSpan(), output.AsTensorSpan(), contiguous, Options());
                for (int b = 0; b < c.Batch; b++) contiguous.Truncate(b, c.Cached);
            },
        };
        if (paged is not null)
            steps.Add(() =>
            {
                layer.Forward(token.AsReadOnlyTensorSpan(), output.AsTensorSpan(), paged, Options());
                for (int b = 0; b < c.Batch; b++) paged.Truncate(b, c.Cached);
            });
        if (fragmented is not null)
            steps.Add(() =>
            {
                layer.Forward(token.AsReadOnlyTensorSpan(), output.AsTensorSpan(), fragmented, Options(timed));
                for (int b = 0; b < c.Batch; b++) fragmented.Truncate(b, c.Cached);
            });
        double[] medians = Timing.MedianSecondsInterleaved(steps, settings.Seconds);
        double weightBytes = (double)(hd + 2 * kv + hd) * e * System.Runtime.CompilerServices.Unsafe.SizeOf<TWeight>();
        return (medians[0], paged is null ? null : medians[1], fragmented is null ? null : medians[2],
            c.CacheBytes(System.Runtime.CompilerServices.Unsafe.SizeOf<TCache>()), weightBytes);
    }
}
