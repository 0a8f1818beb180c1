using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// Everything about an attention call beside Q, K, V and the output. A ref struct because it carries tensor spans
/// (bias, keep-mask, LSE and weights destinations) over any memory without copying; build one per call, it is free.
/// Masks intersect: a key is visible to a query only if <see cref="Mask"/>, <see cref="KeepMask"/> and
/// <see cref="Bias"/> (where it is not -infinity) all allow it. A hidden key never influences the row: NaN or
/// infinity in its K, V or bias changes no bit of the result. For the tensor options, only a default span (rank 0,
/// no lengths) means "none"; any other span is validated, so a zero-length or mis-shaped one is an error, never ignored.
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
    /// Entries of -infinity hide their key (whatever its K holds); a NaN or +infinity at a pair another mask hides is
    /// ignored. Sums that overflow saturate (<see cref="ScoreSaturation"/>). A default span means none.
    /// </summary>
    public ReadOnlyTensorSpan<float> Bias { get; init; }

    /// <summary>Boolean keep-mask, true = visible, with the same broadcasting as <see cref="Bias"/>. A default span means none.</summary>
    public ReadOnlyTensorSpan<bool> KeepMask { get; init; }

    /// <summary>
    /// Destination of the natural-log logsumexp of every scaled, biased score row, [batch, queryHeads, Lq].
    /// A row with no visible key gets -infinity. A default span means not wanted. The backward pass ignores it (pass it
    /// the forward's options as they are; the saved LSE is the backward's own lse argument).
    /// </summary>
    public TensorSpan<float> Lse { get; init; }

    /// <summary>
    /// Destination of the attention probabilities, [batch, queryHeads, Lq, Lk], for inspection (this costs
    /// O(Lq x Lk) memory, which the fused kernels otherwise never need). A default span means not wanted; the backward
    /// pass ignores it.
    /// </summary>
    public TensorSpan<float> Weights { get; init; }

    /// <summary>
    /// Dropout on the probabilities (training); the default is none. The backward pass must get the same value (pass
    /// it the forward's options): it redraws the same mask. <see cref="AttentionDropout.InWeights"/> chooses whether
    /// <see cref="Weights"/> shows the probabilities before dropout (the default) or after.
    /// </summary>
    public AttentionDropout Dropout { get; init; }

    /// <summary>
    /// How the scores Q·Kᵀ are computed: <see cref="ScorePrecision.Float"/> (the default) or
    /// <see cref="ScorePrecision.Int8"/> (smoothed int8, forward only, on backends whose
    /// <see cref="AttentionBackend.SupportsInt8Scores"/> is true).
    /// </summary>
    public ScorePrecision ScorePrecision { get; init; }

    /// <summary>Most threads a backend may use for this call; null means all cores. Results do not depend on it.</summary>
    public int? MaxDegreeOfParallelism { get; init; }

    /// <summary>True when an LSE destination is given (any span but the default one, which the validator then checks).</summary>
    public readonly bool ReturnLse => Lse.Rank != 0;

    /// <summary>True when a weights destination is given (any span but the default one).</summary>
    public readonly bool ReturnWeights => Weights.Rank != 0;
}
