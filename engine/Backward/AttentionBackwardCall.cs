using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// A validated backward call: the forward call it differentiates (shapes, scale, masks, bias, keep-mask resolved),
/// the saved forward output and LSE, the incoming gradient dO, and the gradient destinations dQ, dK, dV shaped like
/// q, k, v. Built only by <see cref="AttentionValidator.ValidateBackward{T}"/>.
/// </summary>
public readonly ref struct AttentionBackwardCall<T> where T : unmanaged
{
    internal AttentionBackwardCall(AttentionCall<T> forward, ReadOnlyStrided4<T> output, ReadOnlyStrided4<float> lse,
        ReadOnlyStrided4<T> dOutput, Strided4<T> dQ, Strided4<T> dK, Strided4<T> dV, Strided4<float> dBias, bool dBiasBroadcasts)
    {
        Forward = forward;
        Output = output; Lse = lse; DOutput = dOutput;
        DQ = dQ; DK = dK; DV = dV;
        DBias = dBias; DBiasBroadcasts = dBiasBroadcasts;
    }

    /// <summary>The forward call (its Output view is the saved output; backward never writes it).</summary>
    public AttentionCall<T> Forward { get; }

    /// <summary>The forward's saved output O (read for D_i = dO_i · O_i).</summary>
    public ReadOnlyStrided4<T> Output { get; }

    /// <summary>[B, Hq, Lq, 1] view of the saved natural-log LSE.</summary>
    public ReadOnlyStrided4<float> Lse { get; }

    /// <summary>The incoming gradient dO, shaped as the output.</summary>
    public ReadOnlyStrided4<T> DOutput { get; }
    /// <summary>Destination of dQ, shaped as Q.</summary>
    public Strided4<T> DQ { get; }
    /// <summary>Destination of dK, shaped as K (summed over the query heads of a GQA group).</summary>
    public Strided4<T> DK { get; }
    /// <summary>Destination of dV, shaped as V (summed over the query heads of a GQA group).</summary>
    public Strided4<T> DV { get; }

    /// <summary>
    /// [B, Hq, Lq, Lk] view of the bias-gradient destination (stride 0 where the bias broadcasts); empty when not wanted.
    /// </summary>
    public Strided4<float> DBias { get; }

    /// <summary>True when several scores share one bias element, so their gradients must be summed into it.</summary>
    public bool DBiasBroadcasts { get; }

    /// <summary>True when the caller asked for the bias gradient (<see cref="DBias"/> is not empty).</summary>
    public bool ReturnBiasGradient => !DBias.IsEmpty;
}
