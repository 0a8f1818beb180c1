using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The CPU backward against the float64 backward oracle with the gradient tolerance rule (3 × the error of the same
/// formula in storage precision, plus the floor), over generated problems with every mask kind, GQA, Lq != Lk,
/// Dv != D, strides and storage types; and bitwise determinism across thread counts.
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

        public AttentionGradients Run(AttentionBackend backend, int? threads = null)
        {
            var (dq, dk, dv) = Destinations();
            using (dq) using (dk) using (dv)
            {
                backend.Backward<T>(Problem.Q, Problem.K, Problem.V, Output, Lse, DOutput, dq, dk, dv,
                    Problem.Options() with { MaxDegreeOfParallelism = threads });
                return new AttentionGradients(ToDouble(dq), ToDouble(dk), ToDouble(dv));
            }
        }

        public (AttentionGradients Oracle, AttentionGradients Naive, AttentionGradients Sensitivity) Baseline()
        {
            var (dq, dk, dv) = Destinations();
            using (dq) using (dk) using (dv)
            {
                var call = AttentionValidator.ValidateBackward<T>(Problem.Q, Problem.K, Problem.V, Output, Lse, DOutput, dq, dk, dv, Problem.Options());
                return (ReferenceBackward.Compute(call), ReferenceBackward.ComputeInStoragePrecision(call), BackwardRoundingSensitivity.Compute(call));
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
            var candidate = c.Run(backend);
            foreach (var (name, got, exact, yardstick, bound) in new[]
                     {
                         ("dQ", candidate.DQ, oracle.DQ, naive.DQ, sensitivity.DQ), ("dK", candidate.DK, oracle.DK, naive.DK, sensitivity.DK),
                         ("dV", candidate.DV, oracle.DV, naive.DV, sensitivity.DV),
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
            var single = c.Run(CpuBackend.Default, threads: 1);
            foreach (int threads in new[] { 2, 3, 8 })
            {
                var other = c.Run(CpuBackend.Default, threads);
                Assert.Equal(single.DQ, other.DQ);
                Assert.Equal(single.DK, other.DK);
                Assert.Equal(single.DV, other.DV);
            }
        }
    }
}
