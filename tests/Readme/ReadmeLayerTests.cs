using System.Numerics.Tensors;

namespace AttentionEngine.Tests;

public class ReadmeLayerTests
{
    [Fact]
    public void The_readme_layer_example_is_the_code_that_runs() =>
        ReadmeTests.AssertBlockIsCompiledCode("// A decoder layer", "ReadmeLayerExample.cs", "README:layer");

    [Fact]
    public void The_readme_layer_example_decodes_what_a_causal_forward_over_the_whole_sequence_computes()
    {
        var random = new Random(12);
        BFloat16[] Values(int n, double scale) => Enumerable.Range(0, n).Select(_ => (BFloat16)(float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
        var (wq, wk, wv, wo) = (Values(256 * 256, 1 / 16.0), Values(64 * 256, 1 / 16.0), Values(64 * 256, 1 / 16.0), Values(256 * 256, 1 / 16.0));
        var (bq, bk, bv, bo) = (Values(256, 0.1), Values(64, 0.1), Values(64, 0.1), Values(256, 0.1));
        using var all = TensorRandom.Create<float>(5, ValueDistribution.Normal, 1, 13, 256);
        using var prompt = NativeTensor<float>.Zeros(1, 12, 256);
        using var token = NativeTensor<float>.Zeros(1, 1, 256);
        all.Storage[..(12 * 256)].CopyTo(prompt.Storage);
        all.Storage[(12 * 256)..].CopyTo(token.Storage);
        using var stepOutput = ReadmeLayerExample.Run(new(wq, [256, 256], []), new(wk, [64, 256], []), new(wv, [64, 256], []), new(wo, [256, 256], []),
            bq, bk, bv, bo, prompt, token);

        using var layer = new MultiHeadAttention<BFloat16>(new MultiHeadAttentionConfig { EmbedDim = 256, Heads = 8, KvHeads = 2, Rotary = new RotaryEmbedding(RotaryLayout.HalfSplit) });
        layer.Load(new ReadOnlyTensorSpan<BFloat16>(wq, [256, 256], []), new ReadOnlyTensorSpan<BFloat16>(wk, [64, 256], []),
            new ReadOnlyTensorSpan<BFloat16>(wv, [64, 256], []), new ReadOnlyTensorSpan<BFloat16>(wo, [256, 256], []), bq, bk, bv, bo);
        using var whole = NativeTensor<float>.Zeros(1, 13, 256);
        layer.Forward<float>(all.AsReadOnlyTensorSpan(), whole.AsTensorSpan(), new MultiHeadAttentionOptions { Mask = Mask.Causal() });
        var expected = whole.Storage[(12 * 256)..].ToArray();
        var actual = stepOutput.Storage.ToArray();
        // The cache stores K, V (and the step's Q and attention output) in bf16, 8 significant bits: a few units of
        // 2^-8 of the output's scale bound the difference (KeyValueCacheProperties holds it to the tolerance rule).
        double scale = expected.Max(x => Math.Abs(x)), bound = 4 * Math.ScaleB(1.0, -8) * scale;
        for (int n = 0; n < 256; n++) Assert.True(Math.Abs(expected[n] - actual[n]) <= bound, $"element {n}: {actual[n]} against {expected[n]} (bound {bound})");
    }
}
