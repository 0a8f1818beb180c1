using System.Numerics.Tensors;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// Packed variable-length batches: every sequence equals its own dense call on the same memory, bitwise (the dense
/// CPU path is the one the property suites check against the oracle), for odd lengths, empty sequences, GQA, Dv ≠ D,
/// every positional mask, token-major and head-major memory; the same bits for any thread count; named errors.
/// </summary>
public unsafe class PackedAttentionTests
{
    [Fact] public void Sequences_equal_their_own_dense_calls_f32() => CheckRandom<float>(40, 11);
    [Fact] public void Sequences_equal_their_own_dense_calls_f16() => CheckRandom<Half>(15, 12);
    [Fact] public void Sequences_equal_their_own_dense_calls_bf16() => CheckRandom<BFloat16>(15, 13);
    [Fact] public void Sequences_equal_their_own_dense_calls_with_int8_scores() => CheckRandom<float>(15, 14, ScorePrecision.Int8);

    private static readonly Mask?[] Masks =
        [null, Mask.Causal(), Mask.Causal(CausalAlignment.BottomRight), Mask.SlidingWindow(5, 0), Mask.SlidingWindow(3, 2, CausalAlignment.BottomRight)];

    private static void CheckRandom<T>(int cases, int seed, ScorePrecision precision = ScorePrecision.Float) where T : unmanaged
    {
        var rng = new Random(seed);
        for (int c = 0; c < cases; c++)
        {
            int sequences = rng.Next(1, 7);
            int kvHeads = rng.Next(1, 3), queryHeads = kvHeads * rng.Next(1, 4);
            int d = new[] { 1, 7, 32, 64, 80 }[rng.Next(5)], dv = rng.Next(2) == 0 ? d : new[] { 5, 48, 64 }[rng.Next(3)];
            var queryOffsets = new int[sequences + 1];
            var keyOffsets = new int[sequences + 1];
            for (int s = 0; s < sequences; s++)
            {
                // Few-query sequences (decode-shaped, at most 8) and long ones (tiles) mixed in one batch.
                queryOffsets[s + 1] = queryOffsets[s] + (rng.Next(8) == 0 ? 0 : rng.Next(2) == 0 ? rng.Next(1, 9) : rng.Next(9, 90));
                keyOffsets[s + 1] = keyOffsets[s] + (rng.Next(8) == 0 ? 0 : rng.Next(6) == 0 ? rng.Next(1000, 2600) : rng.Next(1, 130));
            }
            if (queryOffsets[^1] == 0) queryOffsets[^1] = 1;
            if (keyOffsets[^1] == 0) keyOffsets[^1] = 1;
            bool headMajor = rng.Next(2) == 0;
            var mask = Masks[rng.Next(Masks.Length)];
            string what = $"case {c}: {sequences} sequences, q [{string.Join(",", queryOffsets)}], k [{string.Join(",", keyOffsets)}], Hq{queryHeads} Hkv{kvHeads} D{d} Dv{dv} {(headMajor ? "head-major" : "token-major")} {mask?.ToString() ?? "no mask"}";

            using var q = Packed<T>(rng, queryOffsets[^1], queryHeads, d, headMajor);
            using var k = Packed<T>(rng, keyOffsets[^1], kvHeads, d, headMajor);
            using var v = Packed<T>(rng, keyOffsets[^1], kvHeads, dv, headMajor);
            using var output = Packed<T>(rng, queryOffsets[^1], queryHeads, dv, headMajor);
            using var lse = NativeTensor<float>.Zeros(queryHeads, queryOffsets[^1]);
            output.Fill(ElementTypes.FromSingle<T>(float.NaN));
            lse.Fill(float.NaN);
            PackedAttention.Forward<T>(q, k, v, output, queryOffsets, keyOffsets, new AttentionOptions { Mask = mask, Lse = lse, ScorePrecision = precision });

            using var serialOutput = Packed<T>(rng, queryOffsets[^1], queryHeads, dv, headMajor);
            PackedAttention.Forward<T>(q, k, v, serialOutput, queryOffsets, keyOffsets, new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = 1, ScorePrecision = precision });
            Assert.True(output.ToArray().AsSpan().SequenceEqual(serialOutput.ToArray()), $"{what}: 1 thread differs");

            for (int s = 0; s < sequences; s++)
            {
                int firstQuery = queryOffsets[s], queries = queryOffsets[s + 1] - firstQuery;
                int firstKey = keyOffsets[s], keys = keyOffsets[s + 1] - firstKey;
                if (queries == 0) continue;
                using var dense = NativeTensor<T>.Zeros(1, queryHeads, queries, dv);
                using var denseLse = NativeTensor<float>.Zeros(1, queryHeads, queries);
                if (keys > 0)
                {
                    using var denseQ = Sequence(q, firstQuery, queries);
                    using var denseK = Sequence(k, firstKey, keys);
                    using var denseV = Sequence(v, firstKey, keys);
                    Attention.Using(Backend.Cpu).Forward<T>(denseQ, denseK, denseV, dense, new AttentionOptions { Mask = mask, Lse = denseLse, ScorePrecision = precision });
                }
                for (int h = 0; h < queryHeads; h++)
                for (int i = 0; i < queries; i++)
                {
                    float expectedLse = keys > 0 ? denseLse[0, h, i] : float.NegativeInfinity;
                    Assert.True(expectedLse.Equals(lse[h, firstQuery + i]), $"{what}: sequence {s} head {h} row {i} LSE {lse[h, firstQuery + i]} vs dense {expectedLse}");
                    for (int x = 0; x < dv; x++)
                        Assert.True(dense[0, h, i, x].Equals(output[firstQuery + i, h, x]), $"{what}: sequence {s} head {h} row {i} column {x} differs from its dense call");
                }
            }
        }
    }

    /// <summary>[tokens, heads, dim] with normal values, token-major (FlashAttention's) or head-major memory.</summary>
    private static NativeTensor<T> Packed<T>(Random rng, int tokens, int heads, int dim, bool headMajor) where T : unmanaged
    {
        nint[] lengths = [tokens, heads, dim];
        var tensor = NativeTensor<T>.Allocate(lengths, headMajor ? TensorLayout.Permuted(lengths, [1, 0, 2]) : TensorLayout.Contiguous(lengths));
        for (int t = 0; t < tokens; t++)
        for (int h = 0; h < heads; h++)
        for (int x = 0; x < dim; x++)
            tensor[t, h, x] = ElementTypes.FromDouble<T>(rng.NextDouble() * 4 - 2);
        return tensor;
    }

    /// <summary>One sequence of a packed tensor copied out as a dense [1, heads, length, dim] tensor.</summary>
    private static NativeTensor<T> Sequence<T>(NativeTensor<T> packed, int first, int length) where T : unmanaged
    {
        var dense = NativeTensor<T>.Zeros(1, packed.Lengths[1], length, packed.Lengths[2]);
        for (int h = 0; h < packed.Lengths[1]; h++)
        for (int t = 0; t < length; t++)
        for (int x = 0; x < packed.Lengths[2]; x++)
            dense[0, h, t, x] = packed[first + t, h, x];
        return dense;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Keys_no_row_can_see_change_no_bit(bool half)
    {
        if (half) CheckHiddenKeys<Half>(); else CheckHiddenKeys<float>();
    }

    /// <summary>
    /// Top-left causal with more keys than queries hides every key past a sequence's last query from all its rows, and
    /// a sequence without queries reads none of its keys: NaN, ±infinity and 1e30 there change no bit of any output or
    /// LSE (tile sequences, decode-shaped ones, and the float copies f16 takes).
    /// </summary>
    private static void CheckHiddenKeys<T>() where T : unmanaged
    {
        int[] queryOffsets = [0, 40, 43, 43, 120];
        int[] keyOffsets = [0, 70, 80, 95, 200];
        var rng = new Random(5);
        using var q = Packed<T>(rng, queryOffsets[^1], 4, 32, headMajor: false);
        using var k = Packed<T>(rng, keyOffsets[^1], 2, 32, headMajor: false);
        using var v = Packed<T>(rng, keyOffsets[^1], 2, 32, headMajor: true);
        using var clean = NativeTensor<T>.Zeros(queryOffsets[^1], 4, 32);
        using var poisoned = NativeTensor<T>.Zeros(queryOffsets[^1], 4, 32);
        using var cleanLse = NativeTensor<float>.Zeros(4, queryOffsets[^1]);
        using var poisonedLse = NativeTensor<float>.Zeros(4, queryOffsets[^1]);
        PackedAttention.Forward<T>(q, k, v, clean, queryOffsets, keyOffsets, new AttentionOptions { Mask = Mask.Causal(), Lse = cleanLse });
        double[] poisons = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, 1e30];
        int count = 0;
        for (int s = 0; s < queryOffsets.Length - 1; s++)
        {
            int queries = queryOffsets[s + 1] - queryOffsets[s];
            for (int key = keyOffsets[s] + queries; key < keyOffsets[s + 1]; key++, count++)
            for (int h = 0; h < 2; h++)
            for (int x = 0; x < 32; x++)
            {
                k[key, h, x] = ElementTypes.FromDouble<T>(poisons[rng.Next(poisons.Length)]);
                v[key, h, x] = ElementTypes.FromDouble<T>(poisons[rng.Next(poisons.Length)]);
            }
        }
        Assert.True(count > 50, $"only {count} keys poisoned");
        PackedAttention.Forward<T>(q, k, v, poisoned, queryOffsets, keyOffsets, new AttentionOptions { Mask = Mask.Causal(), Lse = poisonedLse });
        Assert.True(clean.ToArray().AsSpan().SequenceEqual(poisoned.ToArray()), "a hidden key changed the output");
        Assert.True(cleanLse.ToArray().AsSpan().SequenceEqual(poisonedLse.ToArray()), "a hidden key changed the LSE");
    }

    [Fact]
    public void The_longest_key_sequence_the_validator_accepts_runs()
    {
        // K and V broadcast along the tokens (stride 0): 2^31 − 1 keys for one sequence; a bottom-right window of 3 keys
        // puts the work at the very end of the key counter's range.
        const int keys = int.MaxValue;
        float[] kv = [0.5f, 7f];
        var k = new ReadOnlyTensorSpan<float>(kv, 0, [keys, 1, 1], [0, 0, 0]);
        var v = new ReadOnlyTensorSpan<float>(kv, 1, [keys, 1, 1], [0, 0, 0]);
        using var q = NativeTensor<float>.Zeros(1, 1, 1);
        using var output = NativeTensor<float>.Zeros(1, 1, 1);
        using var lse = NativeTensor<float>.Zeros(1, 1);
        PackedAttention.Forward<float>(q, k, v, output, [0, 1], [0, keys],
            new AttentionOptions { Mask = Mask.SlidingWindow(2, 0, CausalAlignment.BottomRight), Lse = lse });
        Assert.Equal(7f, output[0, 0, 0]);
        Assert.Equal(MathF.Log(3), lse[0, 0], 1e-6f);
    }

    [Fact]
    public void More_rows_than_the_kernels_count_are_refused_by_name()
    {
        float[] one = [1f];
        using var q = NativeTensor<float>.Zeros(4, 2, 1);
        using var output = NativeTensor<float>.Zeros(4, 2, 1);
        var error = Assert.Throws<ArgumentException>(() =>
        {
            var broadcast = new ReadOnlyTensorSpan<float>(one, 0, [int.MaxValue, 2, 1], [0, 0, 0]);
            PackedAttention.Forward<float>(q, broadcast, broadcast, output, [0, 4], [0, int.MaxValue]);
        });
        Assert.Equal("k", error.ParamName);
        Assert.Contains("key rows (heads x tokens)", error.Message);
    }

    [Fact]
    public void Bad_calls_name_the_offset_tensor_or_option()
    {
        using var q = NativeTensor<float>.Zeros(10, 2, 8);
        using var k = NativeTensor<float>.Zeros(12, 1, 8);
        using var v = NativeTensor<float>.Zeros(12, 1, 8);
        using var output = NativeTensor<float>.Zeros(10, 2, 8);
        void Call(int[] queryOffsets, int[] keyOffsets, AttentionOptions options = default) =>
            PackedAttention.Forward<float>(q, k, v, output, queryOffsets, keyOffsets, options);

        var e = Assert.Throws<ArgumentException>(() => Call([1, 10], [0, 12]));
        Assert.Equal("queryOffsets", e.ParamName);
        Assert.Contains("queryOffsets[0] is 1", e.Message);
        e = Assert.Throws<ArgumentException>(() => Call([0, 6, 4, 10], [0, 4, 8, 12]));
        Assert.Contains("queryOffsets[2] is 4, below queryOffsets[1] = 6", e.Message);
        e = Assert.Throws<ArgumentException>(() => Call([0, 10], [0, 11]));
        Assert.Equal("keyOffsets", e.ParamName);
        Assert.Contains("expected 12", e.Message);
        e = Assert.Throws<ArgumentException>(() => Call([0, 5, 10], [0, 12]));
        Assert.Equal("keyOffsets", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => Call([0], [0]));
        Assert.Equal("queryOffsets", e.ParamName);
        using var bias = NativeTensor<float>.Zeros(1, 1, 10, 12);
        Assert.Contains("options.Bias", Assert.Throws<NotSupportedException>(() => Call([0, 10], [0, 12], new AttentionOptions { Bias = bias })).Message);
        using var keep = NativeTensor<bool>.Zeros(1, 1, 10, 12);
        Assert.Contains("options.KeepMask", Assert.Throws<NotSupportedException>(() => Call([0, 10], [0, 12], new AttentionOptions { KeepMask = keep })).Message);
        using var badLse = NativeTensor<float>.Zeros(10, 2);
        e = Assert.Throws<ArgumentException>(() => Call([0, 10], [0, 12], new AttentionOptions { Lse = badLse }));
        Assert.Equal("options.Lse", e.ParamName);
        Assert.Contains("dimension 0 (heads) is 10; expected 2", e.Message);
        using var k3 = NativeTensor<float>.Zeros(12, 3, 8);
        e = Assert.Throws<ArgumentException>(() => PackedAttention.Forward<float>(q, k3, k3, output, [0, 10], [0, 12]));
        Assert.Equal("k", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => PackedAttention.Forward<float>(q, k, v, q.AsTensorSpan(), [0, 10], [0, 12]));
        Assert.Equal("output", e.ParamName);
        Assert.Contains("overlaps the memory of q", e.Message);
    }
}
