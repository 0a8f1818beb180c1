namespace AttentionEngine.Tests;

/// <summary>The README's serving example, verbatim between the markers (ReadmeServingTests compares the two and runs it).</summary>
internal static class ReadmeServingExample
{
    /// <summary>Returns the packed output and the split-KV result with its LSE, for the test to check.</summary>
    public static (NativeTensor<float> Packed, NativeTensor<float> Running, NativeTensor<float> RunningLse) Run(
        NativeTensor<float> q2, NativeTensor<float> k1, NativeTensor<float> v1, NativeTensor<float> k2, NativeTensor<float> v2)
    {
        // README:serving-begin
        // Two sequences (7 and 12 queries over 30 and 12 keys) packed end to end as [tokens, heads, headDim]: no padding.
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 19, 8, 64);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 42, 2, 64);
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 42, 2, 64);
        var output = NativeTensor<float>.Zeros(19, 8, 64);
        PackedAttention.Forward<float>(q, k, v, output, queryOffsets: [0, 7, 19], keyOffsets: [0, 30, 42],
            new AttentionOptions { Mask = Mask.Causal(CausalAlignment.BottomRight) });

        // Split-KV: attention over each half of the keys, folded into the attention over all of them
        // (q2 is [1, 8, 16, 64]; (k1, v1) and (k2, v2) are the two halves of a [1, 2, Lk, 64] KV cache).
        var running = NativeTensor<float>.Zeros(1, 8, 16, 64);
        var runningLse = NativeTensor<float>.Zeros(1, 8, 16);
        runningLse.Fill(float.NegativeInfinity);                             // nothing seen yet
        using var part = NativeTensor<float>.Zeros(1, 8, 16, 64);
        using var partLse = NativeTensor<float>.Zeros(1, 8, 16);
        foreach (var (keys, values) in new[] { (k1, v1), (k2, v2) })
        {
            Attention.Forward<float>(q2, keys, values, part, new AttentionOptions { Lse = partLse });
            AttentionMerge.MergeInto<float>(running, runningLse, part, partLse);
        }
        // README:serving-end
        return (output, running, runningLse);
    }
}
