using System.Numerics.Tensors;

namespace AttentionEngine.Tests.Modules;

/// <summary>The page pool: sequences share it, give pages back, and a call it cannot serve is refused with nothing written.</summary>
public class PagedKeyValueCacheTests
{
    private const int E = SmallDecoder.E, Kv = SmallDecoder.Kv, D = SmallDecoder.D;

    private static MultiHeadAttention<float> Layer() => SmallDecoder.Layer(31, RotaryLayout.HalfSplit);

    private static float[] Tokens(int seed, int count) => SmallDecoder.Tokens(seed, count);

    private static float[] Step<TCache>(MultiHeadAttention<float> layer, PagedKeyValueCache<TCache> cache, float[] tokens, int batch, int[]? sequences = null) where TCache : unmanaged
    {
        var output = new float[tokens.Length];
        int length = tokens.Length / E / batch;
        layer.Forward(new ReadOnlyTensorSpan<float>(tokens, [batch, length, E], []), new TensorSpan<float>(output, [batch, length, E], []), cache,
            new MultiHeadAttentionOptions { CacheSequences = sequences });
        return output;
    }

    [Fact]
    public void Sequences_take_pages_as_they_grow_and_give_them_back()
    {
        using var layer = Layer();
        using var cache = new PagedKeyValueCache<float>(pages: 6, pageSize: 4, sequences: 3, Kv, D);
        Step(layer, cache, Tokens(1, 9), 1, [2]);   // 9 tokens: 3 pages
        Step(layer, cache, Tokens(2, 4), 1, [0]);   // 4 tokens: 1 page
        Assert.Equal(2, cache.FreePages);
        Assert.Equal(3, cache.PageTable(2).Count);
        Assert.Equal(new[] { 3 }, cache.PageTable(0));
        // The same tokens in a contiguous cache: the same keys, and the same next-step output.
        using var contiguous = new KeyValueCache<float>(3, Kv, D, 16);
        var options = new MultiHeadAttentionOptions { CacheSequences = new[] { 2 } };
        layer.Forward(new ReadOnlyTensorSpan<float>(Tokens(1, 9), [1, 9, E], []), new TensorSpan<float>(new float[9 * E], [1, 9, E], []), contiguous, options);
        Assert.Equal(contiguous.Keys(2).Flat(), cache.Keys(2, 9));
        var next = Tokens(3, 1);
        var pagedOutput = Step(layer, cache, next, 1, [2]);
        var contiguousOutput = new float[E];
        layer.Forward(new ReadOnlyTensorSpan<float>(next, [1, 1, E], []), new TensorSpan<float>(contiguousOutput, [1, 1, E], []), contiguous, options);
        for (int n = 0; n < E; n++) Assert.Equal(contiguousOutput[n], pagedOutput[n], 5); // one exact merge of 3 pages against one pass
        cache.Truncate(2, 5);
        Assert.Equal(2, cache.PageTable(2).Count);
        cache.Reset(0);
        Assert.Equal(4, cache.FreePages);
    }

    /// <summary>
    /// A sequence whose pages have consecutive numbers (filled alone) is one run: it attends as a contiguous cache does,
    /// to the bit, decode and prefill alike. Sequences growing in turn interleave their pages, and each page is then a
    /// run of its own, merged exactly (within the rule: one more rounding).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Consecutive_pages_attend_as_one_contiguous_run(bool bf16)
    {
        if (bf16) Check<BFloat16>();
        else Check<float>();

        static void Check<TCache>() where TCache : unmanaged
        {
            using var layer = Layer();
            using var paged = new PagedKeyValueCache<TCache>(pages: 12, pageSize: 4, sequences: 2, Kv, D);
            using var contiguous = new KeyValueCache<TCache>(2, Kv, D, 40);
            var prompt = Tokens(6, 13);
            float[] Run(IKeyValueStore<TCache> cache, float[] tokens)
            {
                var options = new MultiHeadAttentionOptions { CacheSequences = new[] { 1 } };
                var output = new float[tokens.Length];
                int length = tokens.Length / E;
                var input = new ReadOnlyTensorSpan<float>(tokens, [1, length, E], []);
                var target = new TensorSpan<float>(output, [1, length, E], []);
                if (cache is PagedKeyValueCache<TCache> p) layer.Forward(input, target, p, options);
                else layer.Forward(input, target, (KeyValueCache<TCache>)cache, options);
                return output;
            }
            Assert.Equal(Run(contiguous, prompt), Run(paged, prompt));   // 13 tokens in pages 0-3
            Assert.Equal(new[] { 0, 1, 2, 3 }, paged.PageTable(1));
            for (int step = 0; step < 5; step++)                          // past a page boundary: page 4 extends the run
                Assert.Equal(Run(contiguous, Tokens(20 + step, 1)), Run(paged, Tokens(20 + step, 1)));
            Assert.Equal(new[] { 0, 1, 2, 3, 4 }, paged.PageTable(1));
        }
    }

    /// <summary>
    /// Two sequences growing in turn interleave their pages, so each page is a run of its own. A decode step (up to 8
    /// queries) reads such a table in place in the blocks of a contiguous cache, run by run; a longer call reads a
    /// gathered contiguous copy: the same bits either way. Heads of 16 (whole AVX-512 vectors, read in place); pages of
    /// 4, 5 and 6 tokens (not dividing a 64-key block); float, bf16 and Half. Hidden garbage changes nothing: a third
    /// sequence of NaN tokens takes pages between theirs, and NaN tokens appended and truncated away leave NaN in the
    /// slots past a sequence's end.
    /// </summary>
    [Theory]
    [InlineData(4, "f32")]
    [InlineData(5, "bf16")]
    [InlineData(6, "f16")]
    public void Fragmented_tables_attend_with_the_contiguous_caches_bits(int pageSize, string type)
    {
        if (type == "bf16") Check<BFloat16>(pageSize);
        else if (type == "f16") Check<Half>(pageSize);
        else Check<float>(pageSize);

        static void Check<TCache>(int pageSize) where TCache : unmanaged
        {
            const int e = 64, d = 16, kv = 2;
            var random = new Random(pageSize);
            float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
            using var layer = new MultiHeadAttention<float>(new MultiHeadAttentionConfig { EmbedDim = e, Heads = 4, KvHeads = kv, Rotary = new RotaryEmbedding(RotaryLayout.Interleaved) });
            layer.Load(new ReadOnlyTensorSpan<float>(Values(e * e), [e, e], []), new ReadOnlyTensorSpan<float>(Values(kv * d * e), [kv * d, e], []),
                new ReadOnlyTensorSpan<float>(Values(kv * d * e), [kv * d, e], []), new ReadOnlyTensorSpan<float>(Values(e * e), [e, e], []),
                Values(e), Values(kv * d), Values(kv * d), Values(e));
            using var paged = new PagedKeyValueCache<TCache>(pages: 400, pageSize, sequences: 3, kv, d);
            using var contiguous = new KeyValueCache<TCache>(3, kv, d, 500);
            float[] Step(float[] tokens, int sequence)
            {
                int length = tokens.Length / e;
                var options = new MultiHeadAttentionOptions { CacheSequences = new[] { sequence } };
                var fromPages = new float[tokens.Length];
                var fromSlots = new float[tokens.Length];
                layer.Forward(new ReadOnlyTensorSpan<float>(tokens, [1, length, e], []), new TensorSpan<float>(fromPages, [1, length, e], []), paged, options);
                layer.Forward(new ReadOnlyTensorSpan<float>(tokens, [1, length, e], []), new TensorSpan<float>(fromSlots, [1, length, e], []), contiguous, options);
                Assert.True(fromSlots.AsSpan().SequenceEqual(fromPages) || sequence == 2, $"sequence {sequence} of {paged.Length(sequence)} keys");
                return fromPages;
            }
            float[] Poison(int length) => Enumerable.Repeat(float.NaN, length * e).ToArray();
            for (int step = 0; step < 60; step++)
            {
                int sequence = step % 2, length = new[] { 1, 4, 7, 12, 20 }[step / 2 % 5]; // the decode kernel up to 8 queries
                if (step % 5 == 2) Step(Poison(2), 2);
                if (step % 7 == 3)
                {
                    int held = paged.Length(sequence);
                    Step(Poison(3), sequence);
                    paged.Truncate(sequence, held);
                    contiguous.Truncate(sequence, held);
                }
                var output = Step(Values(length * e).Select(x => 4 * x).ToArray(), sequence);
                Assert.True(output.All(float.IsFinite), $"step {step}: NaN left in hidden slots reached sequence {sequence}");
            }
            Assert.Contains(paged.PageTable(0).Zip(paged.PageTable(0).Skip(1)), pair => pair.Second != pair.First + 1);
        }
    }

    [Fact]
    public void A_call_the_pool_cannot_serve_is_refused_and_loses_nothing()
    {
        using var layer = Layer();
        using var cache = new PagedKeyValueCache<BFloat16>(pages: 3, pageSize: 2, sequences: 2, Kv, D);
        Step(layer, cache, Tokens(4, 4), 2);      // 2 tokens each: 2 pages
        var keysBefore = cache.Keys(1, 2);
        var e = Assert.Throws<ArgumentException>(() => Step(layer, cache, Tokens(5, 4), 2)); // 2 more each: 2 pages, 1 free
        Assert.Equal("cache", e.ParamName);
        Assert.Contains("has 1 free pages of 2 tokens; appending 2 tokens to 2 sequences needs 2. Nothing was written", e.Message);
        Assert.Equal(2, cache.Length(0));
        Assert.Equal(2, cache.Length(1));
        Assert.Equal(1, cache.FreePages);
        Assert.Equal(keysBefore, cache.Keys(1, 2));
        Step(layer, cache, Tokens(6, 1), 1, [1]); // one sequence fits
        Assert.Equal(3, cache.Length(1));
        Assert.Throws<ArgumentException>(() => new PagedKeyValueCache<float>(0, 4, 1, 1, 1));
    }

    [Fact]
    public void Tokens_truncated_away_or_left_by_a_reset_sequence_change_no_bit_even_when_NaN()
    {
        using var layer = Layer();
        using var reused = new PagedKeyValueCache<float>(pages: 4, pageSize: 4, sequences: 2, Kv, D);
        using var fresh = new PagedKeyValueCache<float>(pages: 4, pageSize: 4, sequences: 2, Kv, D);
        var poison = Tokens(7, 6);
        for (int n = 0; n < poison.Length; n += 3) poison[n] = float.NaN;
        Step(layer, reused, poison, 1, [1]);  // sequence 1: 6 poisoned tokens over 2 pages
        reused.Reset(1);                      // its pages go back, holding NaN keys and values
        var prompt = Tokens(8, 5);
        Step(layer, reused, prompt, 1, [0]);  // sequence 0 takes the used pages: 5 tokens, its last page's slots 1-3 still NaN
        Step(layer, fresh, prompt, 1, [0]);
        var next = Tokens(9, 2);
        Assert.Equal(Step(layer, fresh, next, 1, [0]), Step(layer, reused, next, 1, [0]));
        reused.Truncate(0, 3);                // the dropped tokens stay in memory
        fresh.Truncate(0, 3);
        var again = Tokens(10, 1);
        var output = Step(layer, reused, again, 1, [0]);
        Assert.Equal(Step(layer, fresh, again, 1, [0]), output);
        Assert.All(output, y => Assert.True(float.IsFinite(y)));
    }
}
