using System.Runtime.CompilerServices;
namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>
/// Vector loads from storage that the kernels read in place: float as is, BFloat16 and Half widened in the register
/// (no staging pass through memory). The element type is a generic argument, so each call folds to one instruction path.
/// </summary>
internal static unsafe class ElementLoads<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>True for storage types <see cref="Load{TElement}"/> reads directly.</summary>
    public static bool Supports<TElement>() where TElement : unmanaged =>
        typeof(TElement) == typeof(float) || typeof(TElement) == typeof(BFloat16) || typeof(TElement) == typeof(Half);

    /// <summary>Count elements as floats (int8: the raw integers, the caller applies the row's scale; <see cref="ScaledHalf"/>: 2^-112 times the value, the caller scales the other factor).</summary>
    /// <remarks>Always inlined: in a large kernel the JIT's inlining budget ran out and left it a call per vector.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TElement>(TElement* source) where TElement : unmanaged =>
        typeof(TElement) == typeof(float) ? TOps.Load((float*)source)
        : typeof(TElement) == typeof(BFloat16) ? TOps.LoadBFloat16((ushort*)source)
        : typeof(TElement) == typeof(sbyte) ? TOps.LoadInt8((sbyte*)source)
        : typeof(TElement) == typeof(ScaledHalf) ? TOps.LoadScaledHalf((ushort*)source)
        : typeof(TElement) == typeof(ScaledFiniteHalf) ? TOps.LoadScaledFiniteHalf((ushort*)source)
        : TOps.LoadHalf((ushort*)source);

    /// <summary>
    /// Keeps in <paramref name="largest"/> the largest magnitude loaded, for <see cref="ScaledFiniteHalf"/> only (other
    /// types fold to nothing): with <see cref="LoadedFinite{TElement}"/>, the check that the finite widening held.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Track<TElement>(ref TVec largest, TVec loaded) where TElement : unmanaged
    {
        if (typeof(TElement) == typeof(ScaledFiniteHalf)) largest = TOps.MaxMagnitudeNative(largest, loaded);
    }

    /// <summary>As <see cref="Track{TElement}(ref TVec, TVec)"/> for two loads, one step on the running chain.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Track<TElement>(ref TVec largest, TVec first, TVec second) where TElement : unmanaged
    {
        if (typeof(TElement) == typeof(ScaledFiniteHalf)) largest = TOps.MaxMagnitudeNative(largest, TOps.MaxMagnitudeNative(first, second));
    }

    /// <summary>As <see cref="Track{TElement}(ref TVec, TVec)"/> for four loads, one step on the running chain.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Track<TElement>(ref TVec largest, TVec first, TVec second, TVec third, TVec fourth) where TElement : unmanaged
    {
        if (typeof(TElement) == typeof(ScaledFiniteHalf))
            largest = TOps.MaxMagnitudeNative(largest, TOps.MaxMagnitudeNative(TOps.MaxMagnitudeNative(first, second), TOps.MaxMagnitudeNative(third, fourth)));
    }

    /// <summary>
    /// False when a <see cref="ScaledFiniteHalf"/> load tracked in <paramref name="largest"/> was an infinity or NaN
    /// (the piece must be done again as <see cref="ScaledHalf"/>); true for every other type.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool LoadedFinite<TElement>(TVec largest) where TElement : unmanaged =>
        typeof(TElement) != typeof(ScaledFiniteHalf) || !TOps.AnySet(TOps.Subtract(TOps.Broadcast(ScaledFiniteHalf.FiniteLargest), largest));
}
