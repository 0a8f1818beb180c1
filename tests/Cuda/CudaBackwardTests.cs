using AttentionEngine.Kernels.Cuda;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The CUDA backward (kernels/Cuda/flash_backward.cu) against the float64 backward oracle under the gradient tolerance
/// rule, over generated problems (every mask kind, block masks, GQA, Lq ≠ Lk, Dv ≠ D, strides, bias gradients of
/// every broadcast shape, dropout), with hostile values and poisoned hidden keys, and run to run bit for bit. On a GPU
/// the problems are the CPU backward suite's; on the emulator smaller ones; without either the tests skip.
/// </summary>
[Collection(nameof(CudaTests))]
public class CudaBackwardTests
{
    // The emulator runs the three kernels thread by thread (see CudaBackendTests.Emulated): small problems only.
    private static readonly ProblemLimits Emulated = new() { MaxBatch = 2, MaxQueryHeads = 4, MaxLength = 150, MaxHeadDim = 160, MaxCost = 1.5e6, RangeEdge = false };

    private static ProblemLimits Limits(bool dropout) =>
        (CudaEmulation.Active ? Emulated : CpuBackwardProperties.Limits) with { Dropout = dropout };

    private static void Verify<T>(int gpuCases, int emulatedCases, bool dropout = false) where T : unmanaged
    {
        var backend = CudaBackendTests.Gpu();
        Prop.ForAll(ShrinkBudget.Capped(AttentionGen.Arbitrary(Limits(dropout))), (ProblemSpec spec) =>
        {
            using var c = new CpuBackwardProperties.BackwardCase<T>(spec, backend);
            CpuBackwardProperties.CheckAgainstOracle(backend, c, spec);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(CudaEmulation.Active ? emulatedCases : gpuCases));
    }

    [Fact] public void F16_gradients_match_the_oracle() => Verify<Half>(120, 10);
    [Fact] public void Bf16_gradients_match_the_oracle() => Verify<BFloat16>(120, 10);
    [Fact] public void F32_as_3xtf32_gradients_match_the_oracle() => Verify<float>(120, 10);
    [Fact] public void Dropout_gradients_match_the_oracle_with_the_forwards_mask() => Verify<Half>(60, 6, dropout: true);
}
