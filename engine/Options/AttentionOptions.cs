using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// Everything about an attention call beside Q, K, V and the output. A ref struct because it carries tensor spans
/// (bias, keep-mask, LSE and weights destinations) over any memory without copying; build one per call, it is free.
/// Masks intersect: a key is visible to a query only if <see cref="Mask"/>, <see cref="KeepMask"/> and
/// <see cref="Bias"/> (where it is not -infinity) all allow it.
/// </summary>
public ref struct AttentionOptions
{
    /// <summary>Multiplier of Q·K; null means 1/sqrt(headDim).</summary>
    public float? Scale { get; init; }

    /// <summary>Positional mask (causal, sliding window, their intersections); null means none.</summary>
    public Mask? Mask { get; init; }

    /// <summary>
    /// Additive float bias on the scaled scores, broadcastable to [batch, queryHeads, Lq, Lk]: each dimension either
    /// full or 1, and leading dimensions may be left out ([Lq, Lk], [B, 1, 1, Lk] padding masks, ALiBi [1, H, Lq, Lk]).
    /// Entries of -infinity hide their key. Empty means none.
    /// </summary>
    public ReadOnlyTensorSpan<float> Bias { get; init; }

    /// <summary>Boolean keep-mask, true = visible, with the same broadcasting as <see cref="Bias"/>. Empty means none.</summary>
    public ReadOnlyTensorSpan<bool> KeepMask { get; init; }

    /// <summary>
    /// Destination of the natural-log logsumexp of every scaled, biased score row, [batch, queryHeads, Lq].
    /// A row with no visible key gets -infinity. Empty means not wanted.
    /// </summary>
    public TensorSpan<float> Lse { get; init; }

    /// <summary>
    /// Destination of the attention probabilities, [batch, queryHeads, Lq, Lk], for inspection (this costs
    /// O(Lq x Lk) memory, which the fused kernels otherwise never need). Empty means not wanted.
    /// </summary>
    public TensorSpan<float> Weights { get; init; }

    /// <summary>Most threads a backend may use for this call; null means all cores. Results do not depend on it.</summary>
    public int? MaxDegreeOfParallelism { get; init; }

    /// <summary>True when an LSE destination is given.</summary>
    public readonly bool ReturnLse => !Lse.IsEmpty;

    /// <summary>True when a weights destination is given.</summary>
    public readonly bool ReturnWeights => !Weights.IsEmpty;
}
