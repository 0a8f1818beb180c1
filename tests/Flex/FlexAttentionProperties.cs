using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// Block masks and mask functors on the CPU kernel against the Reference backend given the dense keep-mask they
/// describe (tolerance rule), over generated problems with every other option still on: positional masks, bias,
/// GQA, strides, odd shapes, decode shapes.
/// </summary>
public class FlexAttentionProperties
{
    private static void Verify<T>(CpuIsa isa, int cases, ProblemLimits? limits = null) where T : unmanaged
    {
        var backend = new CpuBackend(isa);
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        Prop.ForAll(AttentionGen.Arbitrary(limits), (ProblemSpec drawn) => CheckDrawnBlockMask<T>(backend, drawn))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(cases));
    }

    /// <summary>
    /// One drawn problem with a drawn block mask (<see cref="FlexMaskCase.Draw"/>) on <paramref name="backend"/>, against
    /// the Reference given the dense keep-mask the block mask describes: output and LSE under the tolerance rule.
    /// </summary>
    internal static void CheckDrawnBlockMask<T>(AttentionBackend backend, ProblemSpec drawn) where T : unmanaged
    {
        var spec = drawn with { KeepMask = KeepMaskKind.None };
        using var problem = AttentionProblem<T>.Create(spec);
        var flex = FlexMaskCase.Draw(problem.Shape, new Random(spec.DataSeed));
        using var dense = WithKeepMask(problem, flex.Dense(problem.Shape));
        var baseline = AttentionInvariants.Baseline.Of(dense);
        var result = problem.Run(flex.Candidate(backend));
        var output = ToleranceRule.Check<T>(result.Output, baseline.Oracle.Output, baseline.Naive.Output, baseline.ScoreRounding.Output);
        var lse = ToleranceRule.Check<float>(result.Lse, baseline.Oracle.Lse, baseline.Naive.Lse, baseline.ScoreRounding.Lse);
        Assert.True(output.Passed && lse.Passed, $"{backend.Name} {ElementTypes.ShortName<T>()} {spec} {flex}: output {output}; LSE {lse}");
    }

    /// <summary>The same problem (copied) with an explicit keep-mask.</summary>
    internal static AttentionProblem<T> WithKeepMask<T>(AttentionProblem<T> problem, NativeTensor<bool> keep) where T : unmanaged =>
        new(problem.Description + " +dense keep", NativeTensor<T>.CopyOf(problem.Q), NativeTensor<T>.CopyOf(problem.K),
            NativeTensor<T>.CopyOf(problem.V), problem.Bias is null ? null : NativeTensor<float>.CopyOf(problem.Bias), keep,
            problem.Mask, problem.Scale, problem.OutputLayout);

    [Fact] public void Avx512_f32() => Verify<float>(CpuIsa.Avx512, 120);
    [Fact] public void Avx512_bf16() => Verify<BFloat16>(CpuIsa.Avx512, 40);
    [Fact] public void Avx2_f16() => Verify<Half>(CpuIsa.Avx2, 40);
    [Fact] public void Vector128_f32() => Verify<float>(CpuIsa.Vector128, 40);
    [Fact] public void Decode_Avx512_f32() => Verify<float>(CpuIsa.Avx512, 40, ProblemLimits.Decode);
}
