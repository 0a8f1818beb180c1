namespace AttentionEngine;

/// <summary>Both masks keep the pair. Blocks classify from the parts' classifications (by arithmetic where they can).</summary>
public readonly record struct AndMask<TLeft, TRight>(TLeft Left, TRight Right) : IBlockClassifiedMask, IShapeCheckedFunctor
    where TLeft : struct, IMaskMod where TRight : struct, IMaskMod
{
    /// <summary>Both sides must fit.</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        FunctorShape.Incompatibility(Left, batch, heads, queryLength, keyLength) is { } left ? $"Left: {left}"
        : FunctorShape.Incompatibility(Right, batch, heads, queryLength, keyLength) is { } right ? $"Right: {right}" : null;

    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) =>
        Left.Keep(batch, head, query, key) && Right.Keep(batch, head, query, key);

    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1)
    {
        var left = BlockClassification.Of(Left, batch, head, q0, q1, k0, k1);
        if (left == BlockKind.Empty) return BlockKind.Empty;
        var right = BlockClassification.Of(Right, batch, head, q0, q1, k0, k1);
        if (right == BlockKind.Empty) return BlockKind.Empty;
        if (left == BlockKind.Full) return right;
        if (right == BlockKind.Full) return left;
        return BlockClassification.Evaluate(this, batch, head, q0, q1, k0, k1); // two partials may still never meet
    }
}

/// <summary>Either mask keeps the pair.</summary>
public readonly record struct OrMask<TLeft, TRight>(TLeft Left, TRight Right) : IBlockClassifiedMask, IShapeCheckedFunctor
    where TLeft : struct, IMaskMod where TRight : struct, IMaskMod
{
    /// <summary>Both sides must fit.</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        FunctorShape.Incompatibility(Left, batch, heads, queryLength, keyLength) is { } left ? $"Left: {left}"
        : FunctorShape.Incompatibility(Right, batch, heads, queryLength, keyLength) is { } right ? $"Right: {right}" : null;

    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) =>
        Left.Keep(batch, head, query, key) || Right.Keep(batch, head, query, key);

    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1)
    {
        var left = BlockClassification.Of(Left, batch, head, q0, q1, k0, k1);
        if (left == BlockKind.Full) return BlockKind.Full;
        var right = BlockClassification.Of(Right, batch, head, q0, q1, k0, k1);
        if (right == BlockKind.Full) return BlockKind.Full;
        if (left == BlockKind.Empty) return right;
        if (right == BlockKind.Empty) return left;
        return BlockClassification.Evaluate(this, batch, head, q0, q1, k0, k1); // two partials may cover the block
    }
}

/// <summary>The pairs the inner mask hides.</summary>
public readonly record struct NotMask<TInner>(TInner Inner) : IBlockClassifiedMask, IShapeCheckedFunctor where TInner : struct, IMaskMod
{
    /// <summary>The inner mask must fit.</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        FunctorShape.Incompatibility(Inner, batch, heads, queryLength, keyLength);

    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) => !Inner.Keep(batch, head, query, key);

    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1) =>
        BlockClassification.Of(Inner, batch, head, q0, q1, k0, k1) switch
        {
            BlockKind.Full => BlockKind.Empty,
            BlockKind.Empty => BlockKind.Full,
            _ => BlockKind.Partial,
        };
}

/// <summary>Composition without spelling out the generic types: <c>MaskMods.And(a, b)</c>.</summary>
public static class MaskMods
{
    /// <summary>Keys visible under both masks.</summary>
    public static AndMask<TLeft, TRight> And<TLeft, TRight>(TLeft left, TRight right)
        where TLeft : struct, IMaskMod where TRight : struct, IMaskMod => new(left, right);

    /// <summary>Keys visible under either mask.</summary>
    public static OrMask<TLeft, TRight> Or<TLeft, TRight>(TLeft left, TRight right)
        where TLeft : struct, IMaskMod where TRight : struct, IMaskMod => new(left, right);

    /// <summary>Keys hidden by <paramref name="inner"/>, and only those.</summary>
    public static NotMask<TInner> Not<TInner>(TInner inner) where TInner : struct, IMaskMod => new(inner);
}
