using System.Numerics.Tensors;

namespace AttentionEngine.Tests.Modules;

/// <summary>Sequences advancing independently, overflow without loss, and the options the cache path refuses.</summary>
public class KeyValueCacheTests
{
    private const int E = SmallDecoder.E, Kv = SmallDecoder.Kv, D = SmallDecoder.D;

    private static MultiHeadAttention<float> Layer() => SmallDecoder.Layer(3, RotaryLayout.Interleaved);

    private static float[] Tokens(int seed, int count) => SmallDecoder.Tokens(seed, count);

    private static float[] Step(MultiHeadAttention<float> layer, KeyValueCache<float> cache, float[] tokens, int batch, int[]? sequences = null)
    {
        var output = new float[tokens.Length];
        int length = tokens.Length / E / batch;
        layer.Forward(new ReadOnlyTensorSpan<float>(tokens, [batch, length, E], []), new TensorSpan<float>(output, [batch, length, E], []), cache,
            new MultiHeadAttentionOptions { CacheSequences = sequences });
        return output;
    }

    [Fact]
    public void Rows_mapped_to_sequences_of_different_lengths_get_the_bits_of_each_sequence_alone()
    {
        using var layer = Layer();
        using var shared = new KeyValueCache<float>(3, Kv, D, 32);
        using var alone1 = new KeyValueCache<float>(1, Kv, D, 32);
        using var alone2 = new KeyValueCache<float>(1, Kv, D, 32);
        var prompt1 = Tokens(1, 7);
        var prompt2 = Tokens(2, 3);
        Step(layer, shared, prompt1, 1, [1]);
        Step(layer, shared, prompt2, 1, [2]);
        Step(layer, alone1, prompt1, 1);
        Step(layer, alone2, prompt2, 1);
        var next = Tokens(3, 2); // one token for sequence 2 (row 0) and one for sequence 1 (row 1)
        var both = Step(layer, shared, next, 2, [2, 1]);
        var only2 = Step(layer, alone2, next[..E], 1);
        var only1 = Step(layer, alone1, next[E..], 1);
        Assert.Equal(only2, both[..E]);
        Assert.Equal(only1, both[E..]);
        Assert.Equal(0, shared.Length(0));
        Assert.Equal(8, shared.Length(1));
        Assert.Equal(4, shared.Length(2));
        Assert.Equal(alone1.Keys(0).Flat(), shared.Keys(1).Flat());
    }

    [Fact]
    public void A_call_that_would_overflow_is_refused_and_loses_nothing()
    {
        using var layer = Layer();
        using var cache = new KeyValueCache<BFloat16>(2, Kv, D, 10);
        var output = new float[2 * 8 * E];
        layer.Forward(new ReadOnlyTensorSpan<float>(Tokens(4, 16), [2, 8, E], []), new TensorSpan<float>(output, [2, 8, E], []), cache);
        var keysBefore = cache.Keys(1).Flat();
        var e = Assert.Throws<ArgumentException>(() =>
            layer.Forward(new ReadOnlyTensorSpan<float>(Tokens(5, 6), [2, 3, E], []), new TensorSpan<float>(new float[6 * E], [2, 3, E], []), cache));
        Assert.Equal("cache", e.ParamName);
        Assert.Contains("holds 8 of 10 tokens; appending 3 would overflow it. Nothing was written", e.Message);
        Assert.Equal(8, cache.Length(0));
        Assert.Equal(8, cache.Length(1));
        Assert.Equal(keysBefore, cache.Keys(1).Flat());
        cache.Reset(0);
        Assert.Equal(0, cache.Length(0));
        cache.Truncate(1, 5);
        Assert.Equal(5, cache.Length(1));
        Assert.Equal(keysBefore.Length / 8 * 5, cache.Keys(1).Flat().Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(1, 6));
    }

    [Fact]
    public void Options_the_cache_sets_itself_are_refused()
    {
        using var layer = Layer();
        using var cache = new KeyValueCache<float>(2, Kv, D, 10);
        void Call(MultiHeadAttentionOptions options) =>
            layer.Forward(new ReadOnlyTensorSpan<float>(Tokens(6, 2), [2, 1, E], []), new TensorSpan<float>(new float[2 * E], [2, 1, E], []), cache, options);
        Assert.Contains("causal to the end", Assert.Throws<ArgumentException>(() => Call(new MultiHeadAttentionOptions { Mask = Mask.Causal() })).Message);
        Assert.Contains("causal to the end", Assert.Throws<ArgumentException>(() => Call(new MultiHeadAttentionOptions { PositionOffset = 4 })).Message);
        Assert.Contains("names sequence 1 twice", Assert.Throws<ArgumentException>(() => Call(new MultiHeadAttentionOptions { CacheSequences = new[] { 1, 1 } })).Message);
        Assert.Contains("the cache has sequences 0..1", Assert.Throws<ArgumentException>(() => Call(new MultiHeadAttentionOptions { CacheSequences = new[] { 0, 2 } })).Message);
        using var wrong = new KeyValueCache<float>(2, Kv, 8, 10);
        var e = Assert.Throws<ArgumentException>(() => layer.Forward(new ReadOnlyTensorSpan<float>(Tokens(6, 2), [2, 1, E], []), new TensorSpan<float>(new float[2 * E], [2, 1, E], []), wrong));
        Assert.Contains("needs 2 of 4", e.Message);
        Assert.Equal(0, cache.Length(0));
        Assert.Throws<ArgumentException>(() => new KeyValueCache<float>(1, 0, 4, 4));
    }
}
