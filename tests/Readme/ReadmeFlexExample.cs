namespace AttentionEngine.Tests;

/// <summary>The README's block-sparse example, verbatim between the markers; <see cref="ReadmeFlexTests"/> keeps them identical.</summary>
internal static class ReadmeFlexExample
{
    public static float[] Run()
    {
        // README:flex-begin
        // Two documents packed into one sequence of 96 tokens: causal inside each, nothing across them.
        int[] documentIds = [.. Enumerable.Repeat(0, 40), .. Enumerable.Repeat(1, 56)];
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 4, 96, 64);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, 4, 96, 64);
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, 4, 96, 64);
        using var output = NativeTensor<float>.Zeros(1, 4, 96, 64);

        var documents = new DocumentMask(documentIds, documentIds, causal: true);
        var blocks = BlockMask.Create(documents, batch: 1, heads: 1, queryLength: 96, keyLength: 96); // O(blocks) memory
        FlexAttention.Create(blocks, new TanhSoftcapScore(30)).Forward<float>(q, k, v, output);      // Gemma-style softcap
        // README:flex-end
        return output.ToArray();
    }
}
