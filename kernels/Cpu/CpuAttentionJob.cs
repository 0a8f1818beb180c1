using AttentionEngine.Kernels.Dropout;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Everything the CPU kernel needs of one call, as plain data over pinned memory (so worker threads can share it).
/// The engine builds it from a validated call; views are [B, H, S, D] with any non-negative strides, bias and keep
/// mask already broadcast to [B, Hq, Lq, Lk], LSE as [B, Hq, Lq, 1].
/// </summary>
internal readonly struct CpuAttentionJob<T> where T : unmanaged
{
    public required int Batch { get; init; }
    public required int QueryHeads { get; init; }
    public required int KvHeads { get; init; }
    public required int QueryLength { get; init; }
    public required int KeyLength { get; init; }
    public required int HeadDim { get; init; }
    public required int ValueDim { get; init; }
    public required float Scale { get; init; }
    public required DiagonalBand Band { get; init; }
    public required RawStrided4<T> Q { get; init; }
    public required RawStrided4<T> K { get; init; }
    public required RawStrided4<T> V { get; init; }
    public required RawStrided4<T> Output { get; init; }
    public RawStrided4<float> Bias { get; init; }
    public RawStrided4<bool> KeepMask { get; init; }
    public RawStrided4<float> Lse { get; init; }
    public RawStrided4<float> Weights { get; init; }

    /// <summary>Dropout on the probabilities (inactive by default: p = 0).</summary>
    public DropoutStream Dropout { get; init; }

    /// <summary>Whether <see cref="Weights"/> receives the probabilities after dropout rather than before.</summary>
    public bool WeightsAfterDropout { get; init; }

    /// <summary>The forward tile kernel's grouping of row tiles per task: 0 by size, 1 never, 2 always (<see cref="Cpu.TileGrouping"/>).</summary>
    public int TileGrouping { get; init; }

    /// <summary>Whether kernels request K and V lines ahead: 0 by size, 1 never, 2 always (<see cref="Cpu.KeyValuePrefetch"/>).</summary>
    public int Prefetch { get; init; }

    /// <summary>
    /// Int8 keys and values with per-token scales, when the call came with them (<see cref="K"/> and <see cref="V"/> are
    /// then empty). Every read of a K or V row goes through <see cref="KeyValueRows"/>, which dequantises them.
    /// </summary>
    public Int8KeyValues Int8 { get; init; }

    /// <summary>
    /// Int8 scores (<c>ScorePrecision.Int8</c>): requested by the engine, bound to the call's quantised keys by
    /// <see cref="ForwardWork{T, TOps, TVec, TMask, TScore}"/> before the row tiles run. Inactive by default.
    /// </summary>
    public Int8Scores.Int8ScoreKeys Int8Scores { get; init; }

    /// <summary>
    /// K and V in pages read through a block table (<see cref="Decode.KeyValuePages"/>); only the decode kernel takes
    /// such a job (<see cref="Decode.DecodeKernel{T, TOps, TVec, TMask, TScore}.Applies"/>). Inactive by default.
    /// </summary>
    public Decode.KeyValuePages Pages { get; init; }

    /// <summary>Float copies of K ([B, Hkv, Lk, D]) and V ([B, Hkv, Lk, DvPad]) when a call made them (<see cref="KeyValueWidening"/>).</summary>
    public RawStrided4<float> WideK { get; init; }
    public RawStrided4<float> WideV { get; init; }

    public int GroupSize => QueryHeads / KvHeads;

    /// <summary>Rows of one (batch, KV head): its query heads' rows, interleaved (row = i · group + g).</summary>
    public int RowsPerKvHead => QueryLength * GroupSize;
}
