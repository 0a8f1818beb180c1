using System.Numerics.Tensors;

namespace AttentionEngine.Tests;

/// <summary>The README's layer example, verbatim between the markers (ReadmeLayerTests compares the two and runs it).</summary>
internal static class ReadmeLayerExample
{
    /// <summary>Runs the example on the given weights ([out, in], bf16) and inputs; returns the decode step's output.</summary>
    public static NativeTensor<float> Run(
        ReadOnlyTensorSpan<BFloat16> wq, ReadOnlyTensorSpan<BFloat16> wk, ReadOnlyTensorSpan<BFloat16> wv, ReadOnlyTensorSpan<BFloat16> wo,
        BFloat16[] bq, BFloat16[] bk, BFloat16[] bv, BFloat16[] bo, NativeTensor<float> prompt, NativeTensor<float> token)
    {
        // README:layer-begin
        // A decoder layer with GQA and rotary positions, weights as PyTorch keeps them ([out, in]), stored in bf16.
        using var layer = new MultiHeadAttention<BFloat16>(new MultiHeadAttentionConfig
        {
            EmbedDim = 256, Heads = 8, KvHeads = 2, Rotary = new RotaryEmbedding(RotaryLayout.HalfSplit),
        });
        layer.Load(wq, wk, wv, wo, bq, bk, bv, bo);   // or LoadPyTorch(in_proj_weight, in_proj_bias, ...)

        // Generation: the prompt [1, 12, 256] fills the cache, then each step adds one token at the next position.
        using var cache = new KeyValueCache<BFloat16>(sequences: 1, kvHeads: 2, headDim: 32, capacity: 1024);
        using var promptOutput = NativeTensor<float>.Zeros(1, 12, 256);
        layer.Forward<float, BFloat16>(prompt, promptOutput, cache);
        var tokenOutput = NativeTensor<float>.Zeros(1, 1, 256);
        layer.Forward<float, BFloat16>(token, tokenOutput, cache);          // position 12; cache.Length(0) is now 13
        // README:layer-end
        return tokenOutput;
    }
}
