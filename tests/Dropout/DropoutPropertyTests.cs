using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests.Dropout;

/// <summary>
/// Dropout through the shared checks: the CPU forward on every vector width against the oracle (which applies the same
/// mask) with the tolerance rule and every invariant that holds under dropout, and the CPU backward against the
/// gradient oracle, over generated problems that all carry dropout (every mask kind, GQA, strides, hostile values).
/// </summary>
public class DropoutPropertyTests
{
    /// <summary>Generated problems, each with dropout (p, seed and offset from its data seed).</summary>
    internal static Arbitrary<ProblemSpec> WithDropout(ProblemLimits limits) =>
        Arb.From(AttentionGen.Problems(limits with { Dropout = true }).Where(s => s.Dropout.IsActive), AttentionGen.Shrink);

    private static void Forward<T>(CpuIsa isa, int cases, ProblemLimits? limits = null) where T : unmanaged
    {
        var backend = new CpuBackend(isa);
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        Prop.ForAll(WithDropout(limits ?? new ProblemLimits { MaxLength = 160, MaxCost = 6e6 }),
                (ProblemSpec spec) => BackendChecks.CheckDrawnProblem<T>(backend, spec))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(cases));
    }

    [Fact] public void Forward_Avx512_f32() => Forward<float>(CpuIsa.Avx512, 60);
    [Fact] public void Forward_Avx2_f32() => Forward<float>(CpuIsa.Avx2, 30);
    [Fact] public void Forward_Avx2_bf16() => Forward<BFloat16>(CpuIsa.Avx2, 15);
    [Fact] public void Forward_Vector128_f16() => Forward<Half>(CpuIsa.Vector128, 15);
    [Fact] public void Forward_decode_shapes_Avx2_f32() => Forward<float>(CpuIsa.Avx2, 25, ProblemLimits.Decode with { MaxKeyLength = 900, MaxCost = 4e6 });

    [Fact] public void Backward_Avx2_f32() => CpuBackwardProperties.VerifyWith<float>(CpuIsa.Avx2, 25, WithDropout(CpuBackwardProperties.Limits));
    [Fact] public void Backward_Vector128_bf16() => CpuBackwardProperties.VerifyWith<BFloat16>(CpuIsa.Vector128, 12, WithDropout(CpuBackwardProperties.Limits));
    [Fact] public void Backward_Avx512_f32() => CpuBackwardProperties.VerifyWith<float>(CpuIsa.Avx512, 40, WithDropout(CpuBackwardProperties.Limits));
}
