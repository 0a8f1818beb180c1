namespace AttentionEngine.Tests;

/// <summary>A backend from another library: it names itself, registers, is found by name, and leaves again.</summary>
public class CustomBackendTests
{
    /// <summary>The float64 Reference under another name, as a third party would wrap or write its own.</summary>
    private sealed class PartnerBackend : AttentionBackend
    {
        public int Calls;

        protected internal override void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
        {
            Interlocked.Increment(ref Calls);
            ReferenceBackend.Instance.Execute(call, blockMask, scoreMod);
        }
    }

    [Fact]
    public void A_custom_backend_names_itself_registers_and_serves_calls_by_name()
    {
        var partner = new PartnerBackend();
        Assert.Equal(Backend.Custom, partner.Kind);
        Assert.Equal("PartnerBackend", partner.Name);
        Attention.Register(partner);
        try
        {
            Assert.Same(partner, Attention.Using("partnerbackend"));
            Assert.Equal(Backend.Cuda, Attention.Backends[^1].Kind); // registered before Cuda
            Assert.Throws<ArgumentException>(() => Attention.Register(new PartnerBackend())); // a second one with the same name

            using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 2, 5, 8);
            using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, 2, 7, 8);
            using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, 2, 7, 8);
            using var ours = NativeTensor<float>.Zeros(1, 2, 5, 8);
            using var reference = NativeTensor<float>.Zeros(1, 2, 5, 8);
            Attention.Using("PartnerBackend").Forward<float>(q, k, v, ours, new AttentionOptions { Mask = Mask.Causal() });
            Attention.Using(Backend.Reference).Forward<float>(q, k, v, reference, new AttentionOptions { Mask = Mask.Causal() });
            Assert.Equal(1, partner.Calls);
            Assert.Equal(reference.ToArray(), ours.ToArray());
        }
        finally
        {
            Assert.True(Attention.Unregister(partner));
        }
        Assert.DoesNotContain(partner, Attention.Backends);
        Assert.False(Attention.Unregister(partner));
        Assert.Throws<ArgumentException>(() => Attention.Unregister(CpuBackend.Default));
        Assert.Throws<ArgumentOutOfRangeException>(() => Attention.Using(Backend.Custom));
        Assert.Contains("No backend is named 'nobody'", Assert.Throws<ArgumentException>(() => Attention.Using("nobody")).Message);
    }
}
