using System.Runtime.InteropServices;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The CUDA backend: on a machine with an sm_80+ GPU, every option against the oracle under the tolerance rule over
/// generated problems (fp16 and bf16, every native and padded D); everywhere, its unavailability is a reason, not a
/// crash, and the host's parameter block matches the kernel's layout (which the kernel asserts at compile time).
/// </summary>
public class CudaBackendTests
{
    private static CudaBackend Gpu()
    {
        var backend = CudaBackend.Default;
        if (!backend.IsAvailable) Assert.Skip($"Cuda: {backend.UnavailableReason}");
        return backend;
    }

    private static void Verify<T>(int cases, ProblemLimits? limits = null) where T : unmanaged
    {
        var backend = Gpu();
        Prop.ForAll(AttentionGen.Arbitrary(limits), (ProblemSpec spec) => CpuBackendProperties.CheckDrawnProblem<T>(backend, spec))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(cases));
    }

    [Fact] public void Gpu_f16_matches_the_oracle() => Verify<Half>(150);
    [Fact] public void Gpu_bf16_matches_the_oracle() => Verify<BFloat16>(150);
    [Fact] public void Gpu_decode_shapes_match_the_oracle() => Verify<Half>(60, ProblemLimits.Decode);

    [Fact]
    public void Gpu_block_masks_match_the_reference()
    {
        var backend = Gpu();
        Prop.ForAll(AttentionGen.Arbitrary(), (ProblemSpec drawn) => FlexAttentionProperties.CheckDrawnBlockMask<Half>(backend, drawn))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(80));
    }

    [Fact]
    public void Without_a_gpu_the_backend_is_unavailable_with_a_reason_and_calls_fail_cleanly()
    {
        var backend = CudaBackend.Default;
        if (backend.IsAvailable) Assert.Skip("this machine has a usable GPU");
        Assert.False(string.IsNullOrWhiteSpace(backend.UnavailableReason));
        using var problem = AttentionProblem<Half>.Create(AttentionGen.Sample(1, seed: 3).First());
        var error = Assert.Throws<InvalidOperationException>(() => problem.Run(backend));
        Assert.Contains("not available", error.Message);
        // The automatic choice never lands on it.
        Assert.NotEqual(Backend.Cuda, Attention.Backends.First(b => b.IsAvailable).Kind);
    }

    [Fact]
    public void The_host_parameter_block_matches_the_kernel_layout()
    {
        Assert.Equal(200, Marshal.SizeOf<FlashParams>());
        Assert.Equal(80, (int)Marshal.OffsetOf<FlashParams>(nameof(FlashParams.BandLo)));
        Assert.Equal(144, (int)Marshal.OffsetOf<FlashParams>(nameof(FlashParams.Batch)));
        Assert.Equal(188, (int)Marshal.OffsetOf<FlashParams>(nameof(FlashParams.Scale)));
    }
}
