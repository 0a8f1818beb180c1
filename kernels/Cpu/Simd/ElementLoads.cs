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

    /// <summary>
    /// Whether reading in place beats widening once into float scratch when the caller widens every element
    /// <paramref name="widenings"/> times in place: a bf16 widening is one shift, always worth it; a Half widening is
    /// seven operations, so past two per element (many rows each converting every key) one staged pass is cheaper.
    /// </summary>
    public static bool ReadInPlace<TElement>(int widenings) where TElement : unmanaged =>
        Supports<TElement>() && (typeof(TElement) != typeof(Half) || widenings <= MaxHalfWidenings);

    /// <summary>Most in-place widenings per Half element before staging wins (decode with 8 rows per KV head measured even: bench/RESULTS.md).</summary>
    public const int MaxHalfWidenings = 2;

    /// <summary>Count elements as floats (int8: the raw integers; the caller applies the row's scale).</summary>
    /// <remarks>Always inlined: in a large kernel the JIT's inlining budget ran out and left it a call per vector.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TElement>(TElement* source) where TElement : unmanaged =>
        typeof(TElement) == typeof(float) ? TOps.Load((float*)source)
        : typeof(TElement) == typeof(BFloat16) ? TOps.LoadBFloat16((ushort*)source)
        : typeof(TElement) == typeof(sbyte) ? TOps.LoadInt8((sbyte*)source)
        : typeof(TElement) == typeof(FiniteHalf) ? TOps.LoadFiniteHalf((ushort*)source)
        : TOps.LoadHalf((ushort*)source);
}
