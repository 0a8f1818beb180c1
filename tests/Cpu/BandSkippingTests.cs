using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// Where a positional band (causal, sliding window) cuts a block, the CPU forward leaves out the score vectors and the
/// value keys it hides. That changes no bit: the same problem with the band given instead as the dense keep-mask it
/// describes (which computes every product) gives the same output and LSE, over generated problems with every
/// alignment, window, GQA, layout, bias and dropout the generator draws, on every instruction set.
/// </summary>
public class BandSkippingTests
{
    private static readonly ProblemLimits Limits = new() { MaxLength = 300, MaxCost = 3e7 };

    [Fact] public void Avx512_f32() => Check<float>(CpuIsa.Avx512, 60, 51);
    [Fact] public void Avx512_bf16() => Check<BFloat16>(CpuIsa.Avx512, 25, 52);
    [Fact] public void Avx2_f16() => Check<Half>(CpuIsa.Avx2, 25, 53);
    [Fact] public void Vector128_f32() => Check<float>(CpuIsa.Vector128, 25, 54);

    private static void Check<T>(CpuIsa isa, int count, ulong seed) where T : unmanaged
    {
        var backend = new CpuBackend(isa);
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        int banded = 0;
        foreach (var drawn in AttentionGen.Sample(count * 3, seed, Limits))
        {
            if (drawn.Causal is null && drawn.Window is null) continue;
            if (++banded > count) break;
            // Clean values: hostile ones send a keep-mask's 0 · NaN products to the guarded pass, a different path.
            using var problem = AttentionProblem<T>.Create(drawn with { Values = ValueDistribution.Normal, Dropout = default });
            using var dense = WithBandAsKeepMask(problem);
            var band = problem.Run(backend);
            var keep = dense.Run(backend);
            SameBits.Equal(keep, band, $"{backend.Name} {problem}");
        }
        Assert.True(banded >= count / 2, $"only {banded} of the drawn problems had a positional mask");
    }

    /// <summary>The same problem (copied) with its positional mask, keep-mask and −infinity bias as one dense keep-mask.</summary>
    private static AttentionProblem<T> WithBandAsKeepMask<T>(AttentionProblem<T> problem) where T : unmanaged
    {
        var shape = problem.Shape;
        var visible = problem.Visibility();
        var keep = NativeTensor<bool>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength);
        long n = 0;
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.QueryHeads; h++)
        for (int i = 0; i < shape.QueryLength; i++)
        for (int j = 0; j < shape.KeyLength; j++)
            keep[b, h, i, j] = visible[n++];
        return new(problem.Description + " +band as keep", NativeTensor<T>.CopyOf(problem.Q), NativeTensor<T>.CopyOf(problem.K),
            NativeTensor<T>.CopyOf(problem.V), problem.Bias is null ? null : NativeTensor<float>.CopyOf(problem.Bias), keep,
            Mask.None, problem.Scale, problem.OutputLayout);
    }
}
