using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The backward oracle against central finite differences of the forward oracle, on small generated problems with
/// every mask kind, GQA, Lq != Lk, Dv != D and strides; plus its shape errors.
/// </summary>
public class ReferenceBackwardTests
{
    private static readonly ProblemLimits Small = new() { MaxBatch = 2, MaxQueryHeads = 4, MaxLength = 10, MaxHeadDim = 6, RangeEdge = false };

    /// <summary>Runs the backward pass of a problem for a given dO (output and LSE from the Reference forward).</summary>
    internal static (NativeTensor<T> DQ, NativeTensor<T> DK, NativeTensor<T> DV) Backward<T>(
        AttentionBackend backend, AttentionProblem<T> problem, NativeTensor<T> dOutput) where T : unmanaged
    {
        var s = problem.Shape;
        using var output = problem.AllocateOutput();
        using var lse = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength);
        Attention.Using(Backend.Reference).Forward<T>(problem.Q, problem.K, problem.V, output, problem.Options(lse.AsTensorSpan()));
        var dq = NativeTensor<T>.Zeros(s.Batch, s.QueryHeads, s.QueryLength, s.HeadDim);
        var dk = NativeTensor<T>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.HeadDim);
        var dv = NativeTensor<T>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.ValueDim);
        backend.Backward<T>(problem.Q, problem.K, problem.V, output, lse, dOutput, dq, dk, dv, problem.Options());
        return (dq, dk, dv);
    }

    [Fact]
    public void Gradients_match_central_finite_differences_of_the_forward_oracle() =>
        Prop.ForAll(AttentionGen.Arbitrary(Small), (ProblemSpec drawn) => CheckProblem(drawn)).Check(Config.QuickThrowOnFailure.WithMaxTest(120));

    /// <summary>
    /// With dropout, at the fixed mask its seed and offset draw: the forward oracle applies the same mask at x ± h, so
    /// the differences are those of the masked function whose gradient the backward computes (the mask redrawn).
    /// </summary>
    [Fact]
    public void Gradients_with_dropout_match_central_finite_differences_at_a_fixed_mask() =>
        Prop.ForAll(AttentionGen.Arbitrary(Small), (ProblemSpec drawn) =>
            CheckProblem(drawn with { Dropout = new AttentionDropout(new[] { 0.1, 0.5, 0.8 }[drawn.DataSeed % 3], (ulong)drawn.DataSeed, 4) }))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(80));

    private static void CheckProblem(ProblemSpec drawn)
    {
        {
            // Smooth values: finite differences need bounded curvature (huge logits make the softmax a step). A finite
            // padding bias of -1e30 absorbs the scores even in float64, so the forward's differences vanish where the
            // exact gradient (in which the bias cancels) does not: -infinity padding stands in for it here.
            var spec = drawn with { Values = ValueDistribution.Normal, Scale = null, Bias = drawn.Bias == BiasKind.HugePadding ? BiasKind.KeyPadding : drawn.Bias };
            using var problem = AttentionProblem<float>.Create(spec);
            var s = problem.Shape;
            using var dOutput = TensorRandom.Create<float>(spec.DataSeed + 1, ValueDistribution.Normal, s.Batch, s.QueryHeads, s.QueryLength, s.ValueDim);
            var (dq, dk, dv) = Backward(Attention.Using(Backend.Reference), problem, dOutput);
            using (dq) using (dk) using (dv)
            {
                var random = new Random(spec.DataSeed);
                CheckAgainstDifferences(problem, dOutput, problem.Q, dq, random, "dQ", spec);
                CheckAgainstDifferences(problem, dOutput, problem.K, dk, random, "dK", spec);
                CheckAgainstDifferences(problem, dOutput, problem.V, dv, random, "dV", spec);
            }
        }
    }

    /// <summary>L(x) = Σ dO · O(x); ∂L/∂x[n] ≈ (L(x + h) − L(x − h)) / (2h) for a few random entries n.</summary>
    private static void CheckAgainstDifferences(AttentionProblem<float> problem, NativeTensor<float> dOutput, NativeTensor<float> input,
        NativeTensor<float> gradient, Random random, string name, ProblemSpec spec)
    {
        var upstream = dOutput.ToArray();
        double Loss()
        {
            var output = problem.Oracle().Output;
            double loss = 0;
            for (int n = 0; n < output.Length; n++) loss += upstream[n] * output[n];
            return loss;
        }
        var lengths = input.Lengths.ToArray();
        var analytic = gradient.ToArray();
        Assert.All(analytic, g => Assert.True(float.IsFinite(g), $"{name} has a non-finite entry: {spec}"));
        for (int trial = 0; trial < 4; trial++)
        {
            nint[] index = lengths.Select(l => (nint)random.Next((int)l)).ToArray();
            ref float x = ref input[index];
            float original = x;
            const float h = 1e-2f;
            x = original + h; float up = x; double lossUp = Loss();
            x = original - h; float down = x; double lossDown = Loss();
            x = original;
            double numeric = (lossUp - lossDown) / ((double)up - down);
            long flat = ((index[0] * lengths[1] + index[1]) * lengths[2] + index[2]) * lengths[3] + index[3];
            double exact = analytic[flat];
            Assert.True(Math.Abs(exact - numeric) <= 2e-3 * Math.Max(1, Math.Abs(numeric)),
                $"{name}[{string.Join(", ", index)}]: backward {exact}, finite difference {numeric}; {spec}");
        }
    }

    [Fact]
    public void Bias_gradients_match_finite_differences_for_every_broadcast_shape()
    {
        foreach (var kind in new[] { BiasKind.Full, BiasKind.PerHead, BiasKind.KeyPadding, BiasKind.Shared2D })
        foreach (var spec in AttentionGen.Sample(6, seed: 31, Small))
        {
            var withBias = spec with { Bias = kind, Values = ValueDistribution.Normal, Scale = null };
            using var problem = AttentionProblem<float>.Create(withBias);
            var s = problem.Shape;
            using var dOutput = TensorRandom.Create<float>(withBias.DataSeed + 1, ValueDistribution.Normal, s.Batch, s.QueryHeads, s.QueryLength, s.ValueDim);
            using var output = problem.AllocateOutput();
            using var lse = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength);
            var reference = Attention.Using(Backend.Reference);
            reference.Forward<float>(problem.Q, problem.K, problem.V, output, problem.Options(lse.AsTensorSpan()));
            using var dq = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength, s.HeadDim);
            using var dk = NativeTensor<float>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.HeadDim);
            using var dv = NativeTensor<float>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.ValueDim);
            using var dBias = NativeTensor<float>.Zeros(problem.Bias!.Lengths);
            reference.Backward<float>(problem.Q, problem.K, problem.V, output, lse, dOutput, dq, dk, dv, problem.Options(), dBias);

            var upstream = dOutput.ToArray();
            double Loss() => problem.Oracle().Output.Select((o, n) => upstream[n] * o).Sum();
            var bias = problem.Bias.Storage;
            var gradient = dBias.Storage;
            for (int n = 0; n < bias.Length; n += Math.Max(1, bias.Length / 5))
            {
                if (float.IsNegativeInfinity(bias[n])) { Assert.Equal(0f, gradient[n]); continue; } // a hidden key has no gradient
                float original = bias[n];
                bias[n] = original + 1e-2f; float up = bias[n]; double lossUp = Loss();
                bias[n] = original - 1e-2f; float down = bias[n]; double lossDown = Loss();
                bias[n] = original;
                double numeric = (lossUp - lossDown) / ((double)up - down);
                Assert.True(Math.Abs(gradient[n] - numeric) <= 2e-3 * Math.Max(1, Math.Abs(numeric)),
                    $"{kind} dBias storage[{n}]: backward {gradient[n]}, finite difference {numeric}; {withBias}");
            }
        }
    }

    [Fact]
    public void Rows_with_no_visible_key_get_zero_gradients_not_nan()
    {
        var spec = new ProblemSpec
        {
            Batch = 1, QueryHeads = 2, KvHeads = 1, QueryLength = 6, KeyLength = 9, HeadDim = 5, ValueDim = 3,
            KeepMask = KeepMaskKind.Random, Values = ValueDistribution.Normal, DataSeed = 3,
        };
        using var problem = AttentionProblem<float>.Create(spec);
        // Hide every key from query 2 of head 1.
        for (int j = 0; j < 9; j++) problem.KeepMask![0, 1, 2, j] = false;
        using var dOutput = TensorRandom.Create<float>(4, ValueDistribution.Normal, 1, 2, 6, 3);
        var (dq, dk, dv) = Backward(Attention.Using(Backend.Reference), problem, dOutput);
        using (dq) using (dk) using (dv)
        {
            for (int c = 0; c < 5; c++) Assert.Equal(0f, dq[0, 1, 2, c]);
            Assert.All(dq.ToArray().Concat(dk.ToArray()).Concat(dv.ToArray()), g => Assert.True(float.IsFinite(g)));
        }
    }

    [Fact]
    public void Gradient_destinations_of_the_wrong_shape_or_aliasing_an_input_are_refused_by_name()
    {
        using var q = NativeTensor<float>.Zeros(1, 2, 4, 8);
        using var k = NativeTensor<float>.Zeros(1, 1, 5, 8);
        using var v = NativeTensor<float>.Zeros(1, 1, 5, 3);
        using var output = NativeTensor<float>.Zeros(1, 2, 4, 3);
        using var lse = NativeTensor<float>.Zeros(1, 2, 4);
        using var dO = NativeTensor<float>.Zeros(1, 2, 4, 3);
        using var dq = NativeTensor<float>.Zeros(1, 2, 4, 8);
        using var dk = NativeTensor<float>.Zeros(1, 1, 5, 8);
        using var dv = NativeTensor<float>.Zeros(1, 1, 5, 3);
        using var wrongDk = NativeTensor<float>.Zeros(1, 2, 5, 8);
        using var wrongLse = NativeTensor<float>.Zeros(1, 2, 5);
        var reference = Attention.Using(Backend.Reference);
        var e = Assert.Throws<ArgumentException>(() => reference.Backward<float>(q, k, v, output, lse, dO, dq, wrongDk, dv));
        Assert.Equal("dK", e.ParamName);
        Assert.Contains("expected [1, 1, 5, 8], the lengths of k", e.Message);
        e = Assert.Throws<ArgumentException>(() => reference.Backward<float>(q, k, v, output, wrongLse, dO, dq, dk, dv));
        Assert.Equal("lse", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => reference.Backward<float>(q, k, v, output, lse, dO, dq, dk, (NativeTensor<float>)dO));
        Assert.Contains("dV", e.Message);
        e = Assert.Throws<ArgumentException>(() => reference.Backward<float>(q, k, v, output, lse, dO, q, dk, dv));
        Assert.Equal("dQ", e.ParamName);
        Assert.Contains("overlaps the memory of q", e.Message);
        e = Assert.Throws<ArgumentException>(() => reference.Backward<float>(q, k, v, output, lse, dO, dq, dk, dv, default, NativeTensor<float>.Zeros(1, 1, 4, 5).AsTensorSpan()));
        Assert.Equal("dBias", e.ParamName);
        Assert.Contains("no options.Bias", e.Message);
    }
}
