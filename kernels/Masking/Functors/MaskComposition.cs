namespace AttentionEngine;

/// <summary>Both masks keep the pair.</summary>
public readonly record struct AndMask<TLeft, TRight>(TLeft Left, TRight Right) : IMaskMod
    where TLeft : struct, IMaskMod where TRight : struct, IMaskMod
{
    public bool Keep(int batch, int head, int query, int key) =>
        Left.Keep(batch, head, query, key) && Right.Keep(batch, head, query, key);
}

/// <summary>Either mask keeps the pair.</summary>
public readonly record struct OrMask<TLeft, TRight>(TLeft Left, TRight Right) : IMaskMod
    where TLeft : struct, IMaskMod where TRight : struct, IMaskMod
{
    public bool Keep(int batch, int head, int query, int key) =>
        Left.Keep(batch, head, query, key) || Right.Keep(batch, head, query, key);
}

/// <summary>The pairs the inner mask hides.</summary>
public readonly record struct NotMask<TInner>(TInner Inner) : IMaskMod where TInner : struct, IMaskMod
{
    public bool Keep(int batch, int head, int query, int key) => !Inner.Keep(batch, head, query, key);
}

/// <summary>Composition without spelling out the generic types: <c>MaskMods.And(a, b)</c>.</summary>
public static class MaskMods
{
    public static AndMask<TLeft, TRight> And<TLeft, TRight>(TLeft left, TRight right)
        where TLeft : struct, IMaskMod where TRight : struct, IMaskMod => new(left, right);

    public static OrMask<TLeft, TRight> Or<TLeft, TRight>(TLeft left, TRight right)
        where TLeft : struct, IMaskMod where TRight : struct, IMaskMod => new(left, right);

    public static NotMask<TInner> Not<TInner>(TInner inner) where TInner : struct, IMaskMod => new(inner);
}
