namespace AttentionEngine;

/// <summary>Keeps every pair (the mask of a call that only has a score functor).</summary>
public readonly struct KeepAll : IBlockClassifiedMask
{
    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) => true;
    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1) => BlockKind.Full;
}

/// <summary>
/// Pairs with <see cref="MinOffset"/> ≤ key − query − <see cref="Shift"/> ≤ <see cref="MaxOffset"/>: the diagonal band
/// that causal masks and sliding windows are. Shift is 0 for top-left alignment and Lk − Lq for bottom-right.
/// </summary>
public readonly record struct BandMask(long MinOffset, long MaxOffset, long Shift) : IBlockClassifiedMask
{
    /// <summary>Causal: key ≤ query (+ Lk − Lq when aligned bottom-right).</summary>
    public static BandMask Causal(int queryLength, int keyLength, CausalAlignment alignment = CausalAlignment.TopLeft) =>
        new(long.MinValue / 4, 0, alignment == CausalAlignment.BottomRight ? (long)keyLength - queryLength : 0);

    /// <summary>Each query sees <paramref name="left"/> keys before its diagonal and <paramref name="right"/> after.</summary>
    public static BandMask SlidingWindow(int left, int right, int queryLength, int keyLength, CausalAlignment alignment = CausalAlignment.TopLeft)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(left);
        ArgumentOutOfRangeException.ThrowIfNegative(right);
        return new(-left, right, alignment == CausalAlignment.BottomRight ? (long)keyLength - queryLength : 0);
    }

    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key)
    {
        long offset = (long)key - query - Shift;
        return offset >= MinOffset && offset <= MaxOffset;
    }

    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1)
    {
        // key − query over the rectangle runs from k0 − (q1 − 1) to (k1 − 1) − q0.
        long low = (long)k0 - (q1 - 1) - Shift, high = (long)(k1 - 1) - q0 - Shift;
        if (high < MinOffset || low > MaxOffset) return BlockKind.Empty;
        return low >= MinOffset && high <= MaxOffset ? BlockKind.Full : BlockKind.Partial;
    }
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
        var window = new BandMask(-Radius, Radius, 0).Classify(batch, head, q0, q1, k0, k1);
        if (window == BlockKind.Full) return BlockKind.Full;
        if (window == BlockKind.Empty && q0 >= GlobalCount && k0 >= GlobalCount) return BlockKind.Empty;
        return BlockKind.Partial;
    }
}
