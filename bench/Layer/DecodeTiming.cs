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
    public static (double Seconds, double CacheBytes, double WeightBytes) Time<TWeight, TCache>(DecodeCase c, LayerSettings settings)
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
        using var cache = new KeyValueCache<TCache>(c.Batch, c.KvHeads, c.HeadDim, c.Cached + 1);
        int threads = settings.Threads;
        using (var prompt = TensorRandom.Create<float>(3, ValueDistribution.Normal, c.Batch, c.Cached, e))
        using (var promptOutput = NativeTensor<float>.Zeros(c.Batch, c.Cached, e))
            layer.Forward(prompt.AsReadOnlyTensorSpan(), promptOutput.AsTensorSpan(), cache, new MultiHeadAttentionOptions { MaxDegreeOfParallelism = threads });
        using var token = TensorRandom.Create<float>(4, ValueDistribution.Normal, c.Batch, 1, e);
        using var output = NativeTensor<float>.Zeros(c.Batch, 1, e);
        double seconds = Timing.MedianSeconds(() =>
        {
            layer.Forward(token.AsReadOnlyTensorSpan(), output.AsTensorSpan(), cache, new MultiHeadAttentionOptions { MaxDegreeOfParallelism = threads });
            for (int b = 0; b < c.Batch; b++) cache.Truncate(b, c.Cached);
        }, settings.Seconds);
        double weightBytes = (double)(hd + 2 * kv + hd) * e * System.Runtime.CompilerServices.Unsafe.SizeOf<TWeight>();
        return (seconds, c.CacheBytes(System.Runtime.CompilerServices.Unsafe.SizeOf<TCache>()), weightBytes);
    }
}
