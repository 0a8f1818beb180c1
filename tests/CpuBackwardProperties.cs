using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The CPU backward against the float64 backward oracle with the gradient tolerance rule (3 × the error of the same
/// formula in storage precision, plus the floor), over generated problems with every mask kind, GQA, Lq != Lk,
/// Dv != D, strides, storage types and bias gradients (every bias broadcast shape); and bitwise determinism across
/// thread counts.
/// </summary>
public class CpuBackwardProperties
{
    private static readonly ProblemLimits Limits = new() { MaxLength = 200, MaxHeadDim = 160, MaxCost = 3e7 };

    /// <summary>A problem with its incoming gradient and the saved forward output and LSE (from the Reference forward).</summary>
    private sealed class BackwardCase<T> : IDisposable where T : unmanaged
    {
        public BackwardCase(ProblemSpec spec)
        {
            Problem = AttentionProblem<T>.Create(spec);
            var s = Problem.Shape;
            DOutput = TensorRandom.Create<T>(spec.DataSeed + 1, ValueDistribution.Normal, s.Batch, s.QueryHeads, s.QueryLength, s.ValueDim);
            Output = Problem.AllocateOutput();
            Lse = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength);
            Attention.Using(Backend.Reference).Forward<T>(Problem.Q, Problem.K, Problem.V, Output, Problem.Options(Lse.AsTensorSpan()));
        }

        public AttentionProblem<T> Problem { get; }
        public NativeTensor<T> DOutput { get; }
        public NativeTensor<T> Output { get; }
        public NativeTensor<float> Lse { get; }

        public (NativeTensor<T> DQ, NativeTensor<T> DK, NativeTensor<T> DV) Destinations()
        {
            var s = Problem.Shape;
            var poison = ElementTypes.FromSingle<T>(float.NaN); // a gradient a kernel forgets to write shows up as NaN
            var dq = NativeTensor<T>.Zeros(s.Batch, s.QueryHeads, s.QueryLength, s.HeadDim);
            var dk = NativeTensor<T>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.HeadDim);
            var dv = NativeTensor<T>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.ValueDim);
            dq.Fill(poison); dk.Fill(poison); dv.Fill(poison);
            return (dq, dk, dv);
        }

        /// <summary>A bias-gradient destination shaped like the problem's bias (NaN-poisoned), or null without a bias.</summary>
        private NativeTensor<float>? BiasDestination()
        {
            if (Problem.Bias is null) return null;
            var dBias = NativeTensor<float>.Zeros(Problem.Bias.Lengths);
            dBias.Fill(float.NaN);
            return dBias;
        }

        /// <summary>Gradients, with the bias gradient flattened in the order of <see cref="BiasOffsets"/>.</summary>
        public (AttentionGradients Gradients, double[] Bias) Run(AttentionBackend backend, int? threads = null)
        {
            var (dq, dk, dv) = Destinations();
            using var dBias = BiasDestination();
            using (dq) using (dk) using (dv)
            {
                backend.Backward<T>(Problem.Q, Problem.K, Problem.V, Output, Lse, DOutput, dq, dk, dv,
                    Problem.Options() with { MaxDegreeOfParallelism = threads }, dBias is null ? default : dBias.AsTensorSpan());
                double[] bias = dBias is null ? [] : BiasOffsets.Select(o => (double)dBias.Storage[(int)o]).ToArray();
                return (new AttentionGradients(ToDouble(dq), ToDouble(dk), ToDouble(dv)), bias);
            }
        }

        public nint[] BiasOffsets { get; private set; } = [];

        /// <summary>Oracle, storage-precision naive and rounding bound; each with its bias gradient in <see cref="BiasOffsets"/> order.</summary>
        public ((AttentionGradients G, double[] Bias) Oracle, (AttentionGradients G, double[] Bias) Naive, (AttentionGradients G, double[] Bias) Bound) Baseline()
        {
            var (dq, dk, dv) = Destinations();
            using var dBias = BiasDestination();
            using (dq) using (dk) using (dv)
            {
                var call = AttentionValidator.ValidateBackward<T>(Problem.Q, Problem.K, Problem.V, Output, Lse, DOutput, dq, dk, dv, Problem.Options(),
                    dBias is null ? default : dBias.AsTensorSpan());
                var oracle = ReferenceBackward.Compute(call);
                var naive = ReferenceBackward.ComputeInStoragePrecision(call);
                var bound = BackwardRoundingSensitivity.Compute(call);
                if (!call.ReturnBiasGradient) return ((oracle, []), (naive, []), (bound, []));
                var exact = ReferenceBackward.BiasGradient(call, oracle.ScoreGradient!);
                var rounded = ReferenceBackward.BiasGradient(call, naive.ScoreGradient!, single: true);
                var bounds = ReferenceBackward.BiasGradient(call, bound.ScoreGradient!);
                BiasOffsets = exact.Keys.Order().ToArray();
                return ((oracle, BiasOffsets.Select(o => exact[o]).ToArray()), (naive, BiasOffsets.Select(o => rounded[o]).ToArray()),
                    (bound, BiasOffsets.Select(o => bounds[o]).ToArray()));
            }
        }

        private static double[] ToDouble(NativeTensor<T> tensor) => Array.ConvertAll(tensor.ToArray(), ElementTypes.ToDouble);

        public void Dispose()
        {
            Problem.Dispose(); DOutput.Dispose(); Output.Dispose(); Lse.Dispose();
        }
    }

    private static void Verify<T>(CpuIsa isa, int cases) where T : unmanaged
    {
        var backend = new CpuBackend(isa);
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        Prop.ForAll(AttentionGen.Arbitrary(Limits), (ProblemSpec spec) =>
        {
            using var c = new BackwardCase<T>(spec);
            var (oracle, naive, sensitivity) = c.Baseline();
            var (candidate, candidateBias) = c.Run(backend);
            foreach (var (name, got, exact, yardstick, bound) in new[]
                     {
                         ("dQ", candidate.DQ, oracle.G.DQ, naive.G.DQ, sensitivity.G.DQ), ("dK", candidate.DK, oracle.G.DK, naive.G.DK, sensitivity.G.DK),
                         ("dV", candidate.DV, oracle.G.DV, naive.G.DV, sensitivity.G.DV), ("dBias", candidateBias, oracle.Bias, naive.Bias, sensitivity.Bias),
                     })
            {
                // The second yardstick is the oracle displaced by the rounding bound: its "error" is the bound itself.
                var displaced = exact.Zip(bound, (e, δ) => e + δ).ToArray();
                var report = ToleranceRule.Check<T>(got, exact, yardstick, displaced, ToleranceRule.GradientFactor);
                Assert.True(report.Passed, $"{backend.Name} {ElementTypes.ShortName<T>()} {spec}: {name} {report}");
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(cases));
    }

    [Fact] public void Avx512_f32() => Verify<float>(CpuIsa.Avx512, 120);
    [Fact] public void Avx512_bf16() => Verify<BFloat16>(CpuIsa.Avx512, 40);
    [Fact] public void Avx2_f16() => Verify<Half>(CpuIsa.Avx2, 40);
    [Fact] public void Vector128_f32() => Verify<float>(CpuIsa.Vector128, 40);

    [Fact]
    public void Gradients_are_bitwise_identical_for_any_thread_count()
    {
        foreach (var spec in AttentionGen.Sample(15, seed: 21, Limits))
        {
            using var c = new BackwardCase<float>(spec);
            c.Baseline(); // fixes the bias-gradient order
            var (single, singleBias) = c.Run(CpuBackend.Default, threads: 1);
            foreach (int threads in new[] { 2, 3, 8 })
            {
                var (other, otherBias) = c.Run(CpuBackend.Default, threads);
                Assert.Equal(single.DQ, other.DQ);
                Assert.Equal(single.DK, other.DK);
                Assert.Equal(single.DV, other.DV);
                Assert.Equal(singleBias, otherBias);
            }
        }
    }
}
