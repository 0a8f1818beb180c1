namespace AttentionEngine.Tests;

/// <summary>The README's usage example, verbatim between the markers; <see cref="ReadmeTests"/> keeps them identical.</summary>
internal static class ReadmeExample
{
    public static (float[] Output, float[] Lse) Run()
    {
        // README:begin
        // Q, K, V in PyTorch SDPA's logical order [batch, heads, seq, headDim]; any memory, any strides.
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 8, 128, 64);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, 2, 256, 64); // GQA: 2 KV heads
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, 2, 256, 64);
        using var output = NativeTensor<float>.Zeros(1, 8, 128, 64);
        using var lse = NativeTensor<float>.Zeros(1, 8, 128);

        var options = new AttentionOptions { Mask = Mask.Causal(CausalAlignment.BottomRight), Lse = lse };
        Attention.Forward<float>(q, k, v, output, options);                       // the best available backend
        Attention.Using(Backend.Reference).Forward<float>(q, k, v, output, options); // or a named one
        // README:end
        return (output.ToArray(), lse.ToArray());
    }
}
