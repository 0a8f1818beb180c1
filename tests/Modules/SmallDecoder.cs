using System.Numerics.Tensors;

namespace AttentionEngine.Tests.Modules;

/// <summary>
/// A small GQA decoder layer (E 16, 4 heads over 2 KV heads of 4, rotary) with random weights, and random tokens:
/// the fixture of the KV cache tests.
/// </summary>
internal static class SmallDecoder
{
    public const int E = 16, H = 4, Kv = 2, D = 4;

    public static MultiHeadAttention<float> Layer(int seed, RotaryLayout rotary)
    {
        var random = new Random(seed);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var layer = new MultiHeadAttention<float>(new MultiHeadAttentionConfig { EmbedDim = E, Heads = H, KvHeads = Kv, Rotary = new RotaryEmbedding(rotary) });
        layer.Load(new ReadOnlyTensorSpan<float>(Values(E * E), [E, E], []), new ReadOnlyTensorSpan<float>(Values(Kv * D * E), [Kv * D, E], []),
            new ReadOnlyTensorSpan<float>(Values(Kv * D * E), [Kv * D, E], []), new ReadOnlyTensorSpan<float>(Values(E * E), [E, E], []),
            Values(E), Values(Kv * D), Values(Kv * D), Values(E));
        return layer;
    }

    /// <summary><paramref name="count"/> tokens of E values in [-1, 1).</summary>
    public static float[] Tokens(int seed, int count)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count * E).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    public static T[] Flat<T>(this ReadOnlyTensorSpan<T> span)
    {
        var values = new T[span.FlattenedLength];
        span.FlattenTo(values);
        return values;
    }
}
