using System.Numerics.Tensors;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>Hand-computed cases that pin down the semantics the oracle defines.</summary>
public class ReferenceSemanticsTests
{
    /// <summary>
    /// With Q = 0 every visible key scores the same, so with V = identity (value j is the unit vector e_j) output row i
    /// is 1/n on exactly the keys row i sees: the visibility pattern can be read off the output.
    /// </summary>
    private static float[,] VisiblePattern(int lq, int lk, AttentionOptionsFactory options)
    {
        using var q = NativeTensor<float>.Zeros(1, 1, lq, 3);
        using var k = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 1, lk, 3);
        using var v = NativeTensor<float>.Zeros(1, 1, lk, lk);
        for (int j = 0; j < lk; j++) v[0, 0, j, j] = 1;
        using var output = NativeTensor<float>.Zeros(1, 1, lq, lk);
        using var lse = NativeTensor<float>.Zeros(1, 1, lq);
        Attention.Forward<float>(q, k, v, output, options(lse));
        var result = new float[lq, lk];
        for (int i = 0; i < lq; i++)
        {
            int visible = 0;
            for (int j = 0; j < lk; j++) visible += output[0, 0, i, j] > 0 ? 1 : 0;
            // LSE of n equal zero scores is ln(n); of none, -infinity.
            Assert.Equal(visible == 0 ? float.NegativeInfinity : MathF.Log(visible), lse[0, 0, i], 5);
            for (int j = 0; j < lk; j++) result[i, j] = output[0, 0, i, j] * Math.Max(visible, 1);
        }
        return result;
    }

    private delegate AttentionOptions AttentionOptionsFactory(NativeTensor<float> lse);

    private static string Draw(float[,] pattern)
    {
        var rows = new List<string>();
        for (int i = 0; i < pattern.GetLength(0); i++)
            rows.Add(string.Concat(Enumerable.Range(0, pattern.GetLength(1)).Select(j => pattern[i, j] switch
            {
                0 => '.',
                var x when Math.Abs(x - 1) < 1e-6 => '#',
                _ => '?',
            })));
        return string.Join("\n", rows) + "\n";
    }

    [Fact]
    public void Causal_top_left_lets_query_i_see_keys_up_to_i()
    {
        var pattern = VisiblePattern(3, 5, lse => new AttentionOptions { Mask = Mask.Causal(CausalAlignment.TopLeft), Lse = lse });
        Assert.Equal("#....\n##...\n###..\n", Draw(pattern));
        Assert.Equal("#....\n##...\n###..\n", Mask.Causal().Draw(3, 5));
    }

    [Theory]
    [InlineData("causal-TL", 7, 9)]
    [InlineData("causal-BR", 7, 9)]
    [InlineData("causal-BR", 9, 4)]
    [InlineData("window", 8, 8)]
    [InlineData("window&causal-BR", 6, 11)]
    [InlineData("none", 3, 5)]
    public void A_mask_and_its_functor_keep_the_same_pairs_and_classify_blocks_exactly(string name, int lq, int lk)
    {
        var mask = name switch
        {
            "causal-TL" => Mask.Causal(),
            "causal-BR" => Mask.Causal(CausalAlignment.BottomRight),
            "window" => Mask.SlidingWindow(2, 1),
            "window&causal-BR" => Mask.SlidingWindow(3, null) & Mask.Causal(CausalAlignment.BottomRight),
            _ => Mask.None,
        };
        var functor = mask.ToFunctor(lq, lk);
        var drawn = mask.Draw(lq, lk).Split('\n');
        for (int i = 0; i < lq; i++)
        for (int j = 0; j < lk; j++)
            Assert.Equal(drawn[i][j] == '#', functor.Keep(0, 0, i, j));
        // Every rectangle's class agrees with its pairs: Full only when all are kept, Empty only when none is.
        for (int q0 = 0; q0 < lq; q0++)
        for (int q1 = q0 + 1; q1 <= lq; q1++)
        for (int k0 = 0; k0 < lk; k0++)
        for (int k1 = k0 + 1; k1 <= lk; k1++)
        {
            int kept = 0;
            for (int i = q0; i < q1; i++)
            for (int j = k0; j < k1; j++)
                kept += functor.Keep(0, 0, i, j) ? 1 : 0;
            var expected = kept == 0 ? BlockKind.Empty : kept == (q1 - q0) * (k1 - k0) ? BlockKind.Full : BlockKind.Partial;
            Assert.Equal(expected, functor.Classify(0, 0, q0, q1, k0, k1));
        }
    }

    [Fact]
    public void A_band_functor_prints_its_offsets_and_refuses_negative_lengths()
    {
        Assert.Equal("key − query in [-∞, 0]", Mask.Causal().ToFunctor(4, 4).ToString());
        Assert.Equal("key − query in [-2, 3]", Mask.SlidingWindow(2, 3).ToFunctor(4, 4).ToString());
        Assert.Equal(Mask.Causal().ToFunctor(5, 5), Mask.SlidingWindow(null, 0).ToFunctor(5, 5));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Mask.Causal().ToFunctor(-1, 4));
        Assert.Equal("queryLength", error.ParamName);
    }

    [Fact]
    public void Causal_bottom_right_lets_query_i_see_keys_up_to_i_plus_lk_minus_lq()
    {
        var pattern = VisiblePattern(3, 5, lse => new AttentionOptions { Mask = Mask.Causal(CausalAlignment.BottomRight), Lse = lse });
        Assert.Equal("###..\n####.\n#####\n", Draw(pattern));
    }

    [Fact]
    public void Causal_bottom_right_with_more_queries_than_keys_leaves_early_rows_empty()
    {
        // Lq > Lk: the first Lq - Lk rows see nothing; they output zeros with LSE -infinity, never NaN.
        var pattern = VisiblePattern(4, 2, lse => new AttentionOptions { Mask = Mask.Causal(CausalAlignment.BottomRight), Lse = lse });
        Assert.Equal("..\n..\n#.\n##\n", Draw(pattern));
    }

    [Fact]
    public void Sliding_window_and_its_intersection_with_causal()
    {
        var window = VisiblePattern(5, 5, lse => new AttentionOptions { Mask = Mask.SlidingWindow(1, 1), Lse = lse });
        Assert.Equal("##...\n###..\n.###.\n..###\n...##\n", Draw(window));
        var local = VisiblePattern(5, 5, lse => new AttentionOptions { Mask = Mask.Causal() & Mask.SlidingWindow(2, null), Lse = lse });
        Assert.Equal("#....\n##...\n###..\n.###.\n..###\n", Draw(local));
        Assert.Equal("causal(top-left) & window(left=2, right=inf, top-left)", (Mask.Causal() & Mask.SlidingWindow(2, null)).ToString());
    }

    [Fact]
    public void Minus_infinity_bias_hides_a_key_like_a_false_keep_mask()
    {
        var bias = new float[] { 0, float.NegativeInfinity, 0, float.NegativeInfinity };
        var keep = new[] { true, false, true, false };
        var byBias = VisiblePattern(2, 4, lse => new AttentionOptions { Bias = new ReadOnlyTensorSpan<float>(bias, [4]), Lse = lse });
        var byKeep = VisiblePattern(2, 4, lse => new AttentionOptions { KeepMask = new ReadOnlyTensorSpan<bool>(keep, [1, 1, 1, 4]), Lse = lse });
        Assert.Equal("#.#.\n#.#.\n", Draw(byBias));
        Assert.Equal(Draw(byBias), Draw(byKeep));
    }

    [Fact]
    public void Fully_masked_rows_output_zero_weights_zero_and_lse_minus_infinity()
    {
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Large, 1, 2, 3, 8);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Large, 1, 2, 4, 8);
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Large, 1, 2, 4, 8);
        using var output = NativeTensor<float>.Zeros(1, 2, 3, 8);
        using var lse = NativeTensor<float>.Zeros(1, 2, 3);
        using var weights = NativeTensor<float>.Zeros(1, 2, 3, 4);
        output.Fill(float.NaN);
        weights.Fill(float.NaN);
        Attention.Forward<float>(q, k, v, output, new AttentionOptions
        {
            KeepMask = new ReadOnlyTensorSpan<bool>(new bool[4], [4]),
            Lse = lse,
            Weights = weights,
        });
        Assert.All(output.ToArray(), x => Assert.Equal(0f, x));
        Assert.All(weights.ToArray(), x => Assert.Equal(0f, x));
        Assert.All(lse.ToArray(), x => Assert.Equal(float.NegativeInfinity, x));
    }

    [Fact]
    public void Default_scale_is_one_over_square_root_of_head_dim()
    {
        var spec = new ProblemSpec { QueryLength = 5, KeyLength = 6, HeadDim = 48, ValueDim = 8, DataSeed = 3 };
        using var implicitScale = AttentionProblem<float>.Create(spec);
        using var explicitScale = AttentionProblem<float>.Create(spec with { Scale = (float)(1 / Math.Sqrt(48)) });
        Assert.Equal(implicitScale.Oracle().Output, explicitScale.Oracle().Output);
        using var otherScale = AttentionProblem<float>.Create(spec with { Scale = 1f });
        Assert.NotEqual(implicitScale.Oracle().Output, otherScale.Oracle().Output);
    }

    [Fact]
    public void A_single_key_is_copied_exactly()
    {
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Large, 1, 1, 4, 16);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Large, 1, 1, 1, 16);
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Outliers, 1, 1, 1, 5);
        using var output = NativeTensor<float>.Zeros(1, 1, 4, 5);
        Attention.Forward<float>(q, k, v, output);
        for (int i = 0; i < 4; i++)
        for (int c = 0; c < 5; c++)
            Assert.Equal(v[0, 0, 0, c], output[0, 0, i, c]);
    }

    [Fact]
    public void Huge_logits_do_not_overflow()
    {
        // Scores around 1e6: exp without the max subtraction would overflow to infinity and give NaN.
        using var q = NativeTensor<float>.FromArray([1000f, -1000f], 1, 1, 2, 1);
        using var k = NativeTensor<float>.FromArray([1000f, 999f, -1000f], 1, 1, 3, 1);
        using var v = NativeTensor<float>.FromArray([1f, 2f, 3f], 1, 1, 3, 1);
        using var output = NativeTensor<float>.Zeros(1, 1, 2, 1);
        Attention.Forward<float>(q, k, v, output, new AttentionOptions { Scale = 1f });
        Assert.Equal(1f, output[0, 0, 0, 0]);
        Assert.Equal(3f, output[0, 0, 1, 0]);
    }

    [Fact]
    public void Strided_bshd_output_holds_the_same_values_as_contiguous_output()
    {
        var spec = new ProblemSpec { Batch = 2, QueryHeads = 4, KvHeads = 2, QueryLength = 9, KeyLength = 13, HeadDim = 7, ValueDim = 5, DataSeed = 11 };
        using var contiguous = AttentionProblem<float>.Create(spec);
        using var bshd = AttentionProblem<float>.Create(spec with { Layout = MemoryLayout.Bshd });
        using var padded = AttentionProblem<float>.Create(spec with { Layout = MemoryLayout.Padded });
        var reference = Attention.Using(Backend.Reference);
        var expected = contiguous.Run(reference).Output;
        Assert.Equal(expected, bshd.Run(reference).Output);
        Assert.Equal(expected, padded.Run(reference).Output);
    }

    [Fact]
    public void Dispatch_picks_an_available_backend_and_rejects_unknown_ones()
    {
        Assert.Contains(Attention.Backends, b => b.Kind == Backend.Reference && b.IsAvailable);
        Assert.Same(Attention.Using(Backend.Reference), Attention.Using(Backend.Reference));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Attention.Using((Backend)99));
        Assert.Contains("Unknown backend", e.Message);
    }
}
