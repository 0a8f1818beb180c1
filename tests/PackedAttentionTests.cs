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

    private static readonly Mask?[] Masks =
        [null, Mask.Causal(), Mask.Causal(CausalAlignment.BottomRight), Mask.SlidingWindow(5, 0), Mask.SlidingWindow(3, 2, CausalAlignment.BottomRight)];

    private static void CheckRandom<T>(int cases, int seed) where T : unmanaged
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
            PackedAttention.Forward<T>(q, k, v, output, queryOffsets, keyOffsets, new AttentionOptions { Mask = mask, Lse = lse });

            using var serialOutput = Packed<T>(rng, queryOffsets[^1], queryHeads, dv, headMajor);
            PackedAttention.Forward<T>(q, k, v, serialOutput, queryOffsets, keyOffsets, new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = 1 });
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
                    Attention.Using(Backend.Cpu).Forward<T>(denseQ, denseK, denseV, dense, new AttentionOptions { Mask = mask, Lse = denseLse });
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
