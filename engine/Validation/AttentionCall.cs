using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// A validated attention call: shapes checked, scale and positional mask resolved, tensor masks broadcast to
/// [batch, queryHeads, Lq, Lk] views (stride 0 on broadcast dimensions). Built only by
/// <see cref="AttentionValidator"/>, so a backend holding one may index without further checks.
/// </summary>
public readonly ref struct AttentionCall<T> where T : unmanaged
{
    internal AttentionCall(
        AttentionShape shape, float scale, Mask mask, DiagonalBand band,
        ReadOnlyStrided4<T> q, ReadOnlyStrided4<T> k, ReadOnlyStrided4<T> v, Strided4<T> output,
        ReadOnlyStrided4<float> bias, ReadOnlyStrided4<bool> keepMask, Strided4<float> lse, Strided4<float> weights,
        int maxDegreeOfParallelism, AttentionDropout dropout = default, QuantizedKeyValues quantized = default,
        ScorePrecision scorePrecision = ScorePrecision.Float)
    {
        ScorePrecision = scorePrecision;
        Quantized = quantized;
        MaxDegreeOfParallelism = maxDegreeOfParallelism;
        Dropout = dropout;
        Shape = shape; Scale = scale; Mask = mask; Band = band;
        Q = q; K = k; V = v; Output = output;
        Bias = bias; KeepMask = keepMask; Lse = lse; Weights = weights;
    }

    /// <summary>The validated sizes of Q, K and V.</summary>
    public AttentionShape Shape { get; }

    /// <summary>Most threads the call may use (the machine's core count when the caller set none).</summary>
    public int MaxDegreeOfParallelism { get; }

    /// <summary>Dropout on the probabilities (the default value: none). A backend that does not apply it refuses the call.</summary>
    public AttentionDropout Dropout { get; }

    /// <summary>How the scores are computed (<see cref="AttentionOptions.ScorePrecision"/>).</summary>
    public ScorePrecision ScorePrecision { get; }

    /// <summary>The resolved multiplier of Q·K.</summary>
    public float Scale { get; }

    /// <summary>The positional mask as given (<see cref="AttentionEngine.Mask.None"/> when absent).</summary>
    public Mask Mask { get; }

    /// <summary>The positional mask resolved for this Lq, Lk.</summary>
    internal DiagonalBand Band { get; }

    /// <summary>[B, Hq, Lq, D] view of the queries.</summary>
    public ReadOnlyStrided4<T> Q { get; }
    /// <summary>[B, Hkv, Lk, D] view of the keys.</summary>
    public ReadOnlyStrided4<T> K { get; }
    /// <summary>[B, Hkv, Lk, Dv] view of the values.</summary>
    public ReadOnlyStrided4<T> V { get; }
    /// <summary>[B, Hq, Lq, Dv] view of the output destination.</summary>
    public Strided4<T> Output { get; }

    /// <summary>[B, Hq, Lq, Lk] view of the additive bias; empty when none.</summary>
    public ReadOnlyStrided4<float> Bias { get; }

    /// <summary>[B, Hq, Lq, Lk] view of the keep-mask; empty when none.</summary>
    public ReadOnlyStrided4<bool> KeepMask { get; }

    /// <summary>[B, Hq, Lq, 1] view of the LSE destination; empty when not wanted.</summary>
    public Strided4<float> Lse { get; }

    /// <summary>[B, Hq, Lq, Lk] view of the weights destination; empty when not wanted.</summary>
    public Strided4<float> Weights { get; }

    /// <summary>
    /// True when keys and values came as int8 with per-token scales (<see cref="QuantizedTensorSpan"/>): <see cref="K"/>
    /// and <see cref="V"/> are then empty. A backend whose <see cref="AttentionBackend.SupportsQuantizedKeyValues"/> is
    /// false never receives such a call.
    /// </summary>
    public bool HasQuantizedKeyValues => Quantized.IsActive;

    /// <summary>The int8 keys and values and their scales (inactive unless <see cref="HasQuantizedKeyValues"/>).</summary>
    internal QuantizedKeyValues Quantized { get; }

    /// <summary>True when the call carries an additive bias.</summary>
    public bool HasBias => !Bias.IsEmpty;
    /// <summary>True when the call carries a keep-mask.</summary>
    public bool HasKeepMask => !KeepMask.IsEmpty;
    /// <summary>True when the caller asked for the LSE.</summary>
    public bool ReturnLse => !Lse.IsEmpty;
    /// <summary>True when the caller asked for the attention weights.</summary>
    public bool ReturnWeights => !Weights.IsEmpty;
}
