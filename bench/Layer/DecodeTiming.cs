using System.Numerics.Tensors;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Kernels;

namespace AttentionEngine.Bench.Layer;

/// <summary>
/// One decode step of a layer over a filled <see cref="KeyValueCache{T}"/>: each timed call appends one token per row,
/// then the cache is truncated back, so every step reads the same number of cached tokens.
/// </summary>
internal static class DecodeTiming
{
    /// <returns>Median seconds per step, cached K+V bytes and weight bytes one step reads.</returns>
    /// <param name="pageSize">0 for a contiguous <see cref="KeyValueCache{T}"/>, else the page size of a <see cref="PagedKeyValueCache{T}"/>.</param>
    public static (double Seconds, double CacheBytes, double WeightBytes) Time<TWeight, TCache>(DecodeCase c, LayerSettings settings, int pageSize)
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
        using var contiguous = pageSize == 0 ? new KeyValueCache<TCache>(c.Batch, c.KvHeads, c.HeadDim, c.Cached + 1) : null;
        using var paged = pageSize == 0 ? null
            : new PagedKeyValueCache<TCache>(c.Batch * ((c.Cached + pageSize) / pageSize + 1), pageSize, c.Batch, c.KvHeads, c.HeadDim);
        int threads = settings.Threads;
        void Step(ReadOnlyTensorSpan<float> input, TensorSpan<float> output)
        {
            var options = new MultiHeadAttentionOptions { MaxDegreeOfParallelism = threads };
            if (paged is null) layer.Forward(input, output, contiguous!, options);
            else layer.Forward(input, output, paged, options);
        }
        using (var prompt = TensorRandom.Create<float>(3, ValueDistribution.Normal, c.Batch, c.Cached, e))
        using (var promptOutput = NativeTensor<float>.Zeros(c.Batch, c.Cached, e))
            Step(prompt.AsReadOnlyTensorSpan(), promptOutput.AsTensorSpan());
        using var token = TensorRandom.Create<float>(4, ValueDistribution.Normal, c.Batch, 1, e);
        using var output = NativeTensor<float>.Zeros(c.Batch, 1, e);
        double seconds = Timing.MedianSeconds(() =>
        {
            Step(token.AsReadOnlyTensorSpan(), output.AsTensorSpan());
            for (int b = 0; b < c.Batch; b++)
            {
                contiguous?.Truncate(b, c.Cached);
                paged?.Truncate(b, c.Cached);
            }
        }, settings.Seconds);
        double weightBytes = (double)(hd + 2 * kv + hd) * e * System.Runtime.CompilerServices.Unsafe.SizeOf<TWeight>();
        return (seconds, c.CacheBytes(System.Runtime.CompilerServices.Unsafe.SizeOf<TCache>()), weightBytes);
    }
}
