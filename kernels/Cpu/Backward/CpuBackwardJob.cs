using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu.Backward;

/// <summary>
/// One backward call as plain data over pinned memory: the forward job it differentiates, the saved output and LSE
/// ([B, Hq, Lq, 1]), the incoming gradient dO, and the destinations dQ, dK, dV (and the score gradient).
/// </summary>
internal readonly struct CpuBackwardJob<T> where T : unmanaged
{
    public required CpuAttentionJob<T> Forward { get; init; }
    public required RawStrided4<T> Output { get; init; }
    public required RawStrided4<float> Lse { get; init; }
    public required RawStrided4<T> DOutput { get; init; }
    public required RawStrided4<T> DQ { get; init; }
    public required RawStrided4<T> DK { get; init; }
    public required RawStrided4<T> DV { get; init; }

    /// <summary>Where ∂L/∂score of every visited pair goes, [B, Hq, Lq, Lk] (one element per pair); empty when no bias gradient is wanted.</summary>
    public RawStrided4<float> ScoreGradient { get; init; }

    /// <summary>
    /// Recomputed softmax statistics [B][Hq][Lq] of (max, 1 / sum), for rows whose saved LSE is too coarse to
    /// normalise P (<see cref="LsePrecision.IsCoarse"/>); null when no row is.
    /// </summary>
    public unsafe float* RowStatistics { get; init; }
}
