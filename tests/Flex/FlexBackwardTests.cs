using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// The backward pass with block masks and score functors: a block mask gives exactly the gradients of the dense
/// keep-mask it describes (bitwise, on the CPU), and score functors carry the chain rule (finite differences of the
/// Reference, and the CPU against the Reference).
/// </summary>
public class FlexBackwardTests
{
    private static readonly ProblemLimits Limits = new() { MaxLength = 150, MaxHeadDim = 96, MaxCost = 2e7, RangeEdge = false };

    private static (NativeTensor<float> Output, NativeTensor<float> Lse, NativeTensor<float> DOutput) Saved(AttentionProblem<float> problem, int seed)
    {
        var s = problem.Shape;
        var output = problem.AllocateOutput();
        var lse = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength);
        Attention.Using(Backend.Reference).Forward<float>(problem.Q, problem.K, problem.V, output, problem.Options(lse.AsTensorSpan()));
        return (output, lse, TensorRandom.Create<float>(seed, ValueDistribution.Normal, s.Batch, s.QueryHeads, s.QueryLength, s.ValueDim));
    }

    private static (NativeTensor<float>, NativeTensor<float>, NativeTensor<float>) Gradients(AttentionShape s) => (
        NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength, s.HeadDim),
        NativeTensor<float>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.HeadDim),
        NativeTensor<float>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.ValueDim));

    [Fact]
    public void A_block_mask_gives_the_gradients_of_its_dense_keep_mask_bitwise()
    {
        foreach (var drawn in AttentionGen.Sample(60, seed: 41, Limits))
        {
            var spec = drawn with { KeepMask = KeepMaskKind.None };
            using var problem = AttentionProblem<float>.Create(spec);
            var flex = FlexMaskCase.Draw(problem.Shape, new Random(spec.DataSeed));
            using var dense = FlexAttentionProperties.WithKeepMask(problem, flex.Dense(problem.Shape));
            // The saved output and LSE must be the ones of the masked forward: take them from the dense problem.
            var (output, lse, dOutput) = Saved(dense, spec.DataSeed + 1);
            var (dq1, dk1, dv1) = Gradients(problem.Shape);
            var (dq2, dk2, dv2) = Gradients(problem.Shape);
            using (output) using (lse) using (dOutput) using (dq1) using (dk1) using (dv1) using (dq2) using (dk2) using (dv2)
            {
                flex.Backward<float>(CpuBackend.Default, problem.Q, problem.K, problem.V, output, lse, dOutput, dq1, dk1, dv1, problem.Options());
                CpuBackend.Default.Backward<float>(dense.Q, dense.K, dense.V, output, lse, dOutput, dq2, dk2, dv2, dense.Options());
                Assert.True(dq1.ToArray().SequenceEqual(dq2.ToArray()), $"dQ differs: {spec} {flex}");
                Assert.True(dk1.ToArray().SequenceEqual(dk2.ToArray()), $"dK differs: {spec} {flex}");
                Assert.True(dv1.ToArray().SequenceEqual(dv2.ToArray()), $"dV differs: {spec} {flex}");
            }
        }
    }

    [Fact]
    public void Score_functor_gradients_match_finite_differences_and_the_cpu_matches_the_reference()
    {
        var spec = new ProblemSpec
        {
            Batch = 1, QueryHeads = 2, KvHeads = 1, QueryLength = 7, KeyLength = 9, HeadDim = 6, ValueDim = 5,
            Values = ValueDistribution.Normal, Scale = 2.5f, DataSeed = 8,
        };
        var mod = new ChainedScore<AlibiScore, TanhSoftcapScore>(AlibiScore.Standard(2), new TanhSoftcapScore(1.5f));
        var blocks = BlockMask.Create(new DilatedMask(1, 5), 1, 1, 7, 9, 4, 4);
        var reference = FlexAttention.Create(blocks, mod, Attention.Using(Backend.Reference));
        var cpu = FlexAttention.Create(blocks, mod, CpuBackend.Default);
        using var problem = AttentionProblem<float>.Create(spec);
        using var output = problem.AllocateOutput();
        using var lse = NativeTensor<float>.Zeros(1, 2, 7);
        reference.Forward<float>(problem.Q, problem.K, problem.V, output, problem.Options(lse.AsTensorSpan()));
        using var dOutput = TensorRandom.Create<float>(9, ValueDistribution.Normal, 1, 2, 7, 5);
        var (dq, dk, dv) = Gradients(problem.Shape);
        var (cq, ck, cv) = Gradients(problem.Shape);
        using (dq) using (dk) using (dv) using (cq) using (ck) using (cv)
        {
            reference.Backward<float>(problem.Q, problem.K, problem.V, output, lse, dOutput, dq, dk, dv, problem.Options());
            cpu.Backward<float>(problem.Q, problem.K, problem.V, output, lse, dOutput, cq, ck, cv, problem.Options());
            foreach (var (name, exact, candidate) in new[] { ("dQ", dq, cq), ("dK", dk, ck), ("dV", dv, cv) })
            {
                var a = exact.ToArray();
                var b = candidate.ToArray();
                double scale = Math.Max(1, a.Max(x => Math.Abs(x)));
                for (int n = 0; n < a.Length; n++)
                    Assert.True(Math.Abs(a[n] - b[n]) <= 1e-5 * scale, $"{name}[{n}]: reference {a[n]}, cpu {b[n]}");
            }

            // Finite differences of the forward (with the functor) check the reference's chain rule.
            var upstream = dOutput.ToArray();
            double Loss()
            {
                using var o = problem.AllocateOutput();
                reference.Forward<float>(problem.Q, problem.K, problem.V, o, problem.Options());
                return o.ToArray().Select((x, n) => (double)upstream[n] * x).Sum();
            }
            foreach (var (input, gradient, name) in new[] { (problem.Q, dq, "dQ"), (problem.K, dk, "dK") })
            {
                var storage = input.Storage;
                var g = gradient.Storage;
                for (int n = 0; n < storage.Length; n += 7)
                {
                    float original = storage[n];
                    storage[n] = original + 1e-2f; float up = storage[n]; double lossUp = Loss();
                    storage[n] = original - 1e-2f; float down = storage[n]; double lossDown = Loss();
                    storage[n] = original;
                    double numeric = (lossUp - lossDown) / ((double)up - down);
                    Assert.True(Math.Abs(g[n] - numeric) <= 3e-3 * Math.Max(1, Math.Abs(numeric)), $"{name}[{n}]: backward {g[n]}, finite difference {numeric}");
                }
            }
        }
    }
}
