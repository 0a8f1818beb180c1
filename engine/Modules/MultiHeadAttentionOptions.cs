using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// Per-call settings of a <see cref="MultiHeadAttention{TWeight}"/> forward. A ref struct because it carries tensor
/// spans over any memory; a default span means "none".
/// </summary>
public ref struct MultiHeadAttentionOptions
{
    /// <summary>Positional mask on the attention (causal, sliding window); null means none.</summary>
    public Mask? Mask { get; init; }

    /// <summary>
    /// [batch, Lk] booleans, true where a key is padding and must be ignored: PyTorch's key_padding_mask convention (the
    /// opposite of <see cref="AttentionOptions.KeepMask"/>). A default span means every key is real.
    /// </summary>
    public ReadOnlyTensorSpan<bool> KeyPadding { get; init; }

    /// <summary>Rotary position of the first query (and, in self-attention, of the first key): the tokens already in context when decoding.</summary>
    public long PositionOffset { get; init; }

    /// <summary>Rotary position of the first key in cross-attention (self-attention uses <see cref="PositionOffset"/>).</summary>
    public long KeyPositionOffset { get; init; }

    /// <summary>Multiplier of q·k; null means 1/sqrt(HeadDim).</summary>
    public float? Scale { get; init; }

    /// <summary>Destination of the per-head attention probabilities, [batch, heads, Lq, Lk]. A default span means not wanted.</summary>
    public TensorSpan<float> Weights { get; init; }

    /// <summary>Destination of the probabilities averaged over heads, [batch, Lq, Lk] (PyTorch's average_attn_weights). A default span means not wanted.</summary>
    public TensorSpan<float> AverageWeights { get; init; }

    /// <summary>
    /// With a <see cref="KeyValueCache{T}"/>: the cache sequence each batch row extends (distinct indices, one per row).
    /// A default span means row b extends sequence b.
    /// </summary>
    public ReadOnlySpan<int> CacheSequences { get; init; }

    /// <summary>
    /// Training-mode dropout on the attention probabilities (PyTorch's MultiheadAttention dropout while training); the
    /// default is none, as in evaluation. Pass the same value to <c>Backward</c>: it redraws the same mask. Heads are the
    /// layer's query heads and queries the call's positions. Not taken with a key-value cache (inference).
    /// </summary>
    public AttentionDropout Dropout { get; init; }

    /// <summary>Most threads to use; null means all cores. Results do not depend on it.</summary>
    public int? MaxDegreeOfParallelism { get; init; }
}
