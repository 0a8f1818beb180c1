using AttentionEngine.Kernels.IlGpu;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The ILGPU backend on ILGPU's CPU accelerator (32-lane warps, 2 warps per group: the warp reductions and shared
/// tiles a GPU runs) against the oracle: the tolerance rule and every invariant, over generated problems with every
/// option. Problems are smaller than the CPU suites' because each simulated GPU thread is an OS thread.
/// </summary>
[Collection(nameof(IlGpuCpuAccelerator))]
public class IlGpuBackendProperties(IlGpuCpuAccelerator accelerator)
{
    /// <summary>Sizes the CPU accelerator gets through in the test budget; every D up to 256 is still drawn.</summary>
    internal static ProblemLimits Small { get; } = new() { MaxBatch = 2, MaxQueryHeads = 4, MaxLength = 48, MaxCost = 4e5 };

    private void Verify<T>(int cases, ProblemLimits limits, bool dropoutOnly = false) where T : unmanaged
    {
        var backend = accelerator.Backend;
        var problems = ShrinkBudget.Capped(dropoutOnly ? Dropout.DropoutPropertyTests.WithDropout(limits) : AttentionGen.Arbitrary(limits));
        Prop.ForAll(problems, (ProblemSpec spec) => BackendChecks.CheckDrawnProblem<T>(backend, spec))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(cases));
    }

    // Case counts keep this collection (each simulated GPU thread is an OS thread) near three minutes on a 2-core CI
    // machine, inside the suite's 10-minute budget; the CPU suites cover the same generator with hundreds of cases, and
    // every run draws new cases.
    [Fact] public void Cpu_accelerator_f32() => Verify<float>(4, Small);
    [Fact] public void Cpu_accelerator_f16() => Verify<Half>(6, Small);
    [Fact] public void Cpu_accelerator_bf16() => Verify<BFloat16>(5, Small);
    [Fact] public void Cpu_accelerator_dropout_f32() => Verify<float>(2, Small with { Dropout = true, MaxCost = 1.5e5 }, dropoutOnly: true);
    [Fact] public void Cpu_accelerator_decode_f32() => Verify<float>(4, ProblemLimits.Decode with { MaxBatch = 1, MaxQueryHeads = 2, MaxKeyLength = 700, MaxCost = 4e5 });

    /// <summary>
    /// A case the decode suite drew (shrunk): with the row sum reduced across lanes and the outputs summed key by key,
    /// V = 1 came out 21 ulps off 1 (the rule allows 10 here). Both now take the weights in one order.
    /// </summary>
    [Fact]
    public void Decode_row_sum_rounds_like_the_outputs() => BackendChecks.CheckDrawnProblem<float>(accelerator.Backend, new ProblemSpec
    {
        QueryLength = 2, KeyLength = 298, HeadDim = 7, ValueDim = 1, Values = ValueDistribution.Outliers, DataSeed = 497283633,
    });
}

/// <summary>One ILGPU CPU accelerator shared by the ILGPU tests (opening one compiles nothing, but kernels are cached per accelerator).</summary>
public sealed class IlGpuCpuAccelerator : IDisposable
{
    public IlGpuBackend Backend { get; } = new(IlGpuDeviceKind.Cpu);
    public void Dispose() => Backend.Dispose();
}

[CollectionDefinition(nameof(IlGpuCpuAccelerator))]
public sealed class IlGpuCpuAcceleratorCollection : ICollectionFixture<IlGpuCpuAccelerator>;
