namespace AttentionEngine;

/// <summary>
/// The mask-functor form of a positional <c>Mask</c> (causal, sliding window, their intersections) resolved for
/// one Lq x Lk problem, for composing with other functors in a <see cref="BlockMask{TMask}"/>: made by
/// <c>Mask.ToFunctor(queryLength, keyLength)</c>, so a band is spelled one way everywhere. Query i sees key j exactly
/// when Lo ≤ j − i ≤ Hi; whole blocks are classified by arithmetic. <c>default(BandMask)</c> keeps only the diagonal j = i.
/// </summary>
public readonly struct BandMask : IBlockClassifiedMask, IEquatable<BandMask>
{
    internal BandMask(DiagonalBand band) => Band = band;

    internal DiagonalBand Band { get; }

    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) => Band.Contains(query, key);

    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1)
    {
        if (Band.ExcludesAll(q0, q1 - 1, k0, k1 - 1)) return BlockKind.Empty;
        return Band.ContainsAll(q0, q1 - 1, k0, k1 - 1) ? BlockKind.Full : BlockKind.Partial;
    }

    /// <inheritdoc/>
    public bool Equals(BandMask other) => Band == other.Band;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is BandMask other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => Band.GetHashCode();

    /// <summary>The visible offsets, e.g. "key − query in [-5, 2]" (unbounded sides shown as ±∞).</summary>
    public override string ToString() =>
        $"key − query in [{(Band.Lo <= -DiagonalBand.Unbounded ? "-∞" : Band.Lo.ToString())}, {(Band.Hi >= DiagonalBand.Unbounded ? "+∞" : Band.Hi.ToString())}]";
}

/// <summary>Prefix-LM: the first <see cref="PrefixLength"/> keys are visible to every query, the rest causally.</summary>
public readonly record struct PrefixLmMask(int PrefixLength) : IBlockClassifiedMask
{
    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) => key < PrefixLength || key <= query;

    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1)
    {
        if (k1 <= PrefixLength || k1 - 1 <= q0) return BlockKind.Full;
        if (k0 >= PrefixLength && k0 > q1 - 1) return BlockKind.Empty;
        return BlockKind.Partial;
    }
}

/// <summary>
/// Dilated (strided) attention: a query sees the keys whose distance to it is a multiple of <see cref="Dilation"/>,
/// causally and at most <see cref="Window"/> keys back (Longformer's dilated windows).
/// </summary>
public readonly record struct DilatedMask(int Dilation, int Window) : IMaskMod, IShapeCheckedFunctor
{
    /// <summary>Dilation must be at least 1 (it divides the distance).</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        Dilation >= 1 ? null : $"Dilation is {Dilation}; expected at least 1";

    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key)
    {
        long distance = (long)query - key;
        return distance >= 0 && distance <= Window && distance % Dilation == 0;
    }
}

/// <summary>
/// Global tokens (Longformer/BigBird): the first <see cref="GlobalCount"/> positions see every key and are seen by
/// every query; the rest see a symmetric window of <see cref="Radius"/> keys on each side.
/// </summary>
public readonly record struct GlobalTokensMask(int GlobalCount, int Radius) : IBlockClassifiedMask
{
    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) =>
        query < GlobalCount || key < GlobalCount || Math.Abs(key - query) <= Radius;

    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1)
    {
        if (q1 <= GlobalCount || k1 <= GlobalCount) return BlockKind.Full;
        var window = new BandMask(new DiagonalBand(-Radius, Radius)).Classify(batch, head, q0, q1, k0, k1);
        if (window == BlockKind.Full) return BlockKind.Full;
        if (window == BlockKind.Empty && q0 >= GlobalCount && k0 >= GlobalCount) return BlockKind.Empty;
        return BlockKind.Partial;
    }
}
