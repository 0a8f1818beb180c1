namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>
/// Vector loads from storage that the kernels read in place: float as is, BFloat16 widened in the register (no
/// staging pass through memory). The element type is a generic argument, so each call folds to one instruction path.
/// </summary>
internal static unsafe class ElementLoads<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>True for storage types <see cref="Load{TElement}"/> reads directly.</summary>
    public static bool Supports<TElement>() where TElement : unmanaged =>
        typeof(TElement) == typeof(float) || typeof(TElement) == typeof(BFloat16);

    public static TVec Load<TElement>(TElement* source) where TElement : unmanaged =>
        typeof(TElement) == typeof(float) ? TOps.Load((float*)source) : TOps.LoadBFloat16((ushort*)source);
}
