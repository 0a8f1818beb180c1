using System.Runtime.CompilerServices;

namespace AttentionEngine.Kernels.Tensors;

/// <summary>
/// A 4-D strided view over pinned or native memory, as a plain struct: unlike the ref-struct views it can be
/// captured by worker threads. Create it inside a <c>fixed</c> block (or over native memory) that outlives the work.
/// </summary>
public readonly unsafe struct RawStrided4<T> where T : unmanaged
{
    /// <summary>Address of element [0, 0, 0, 0]; null for an empty view.</summary>
    public readonly T* Base;
    /// <summary>Length of each of the four dimensions.</summary>
    public readonly int Length0, Length1, Length2, Length3;
    /// <summary>Element stride of each dimension (0 where a dimension broadcasts).</summary>
    public readonly nint Stride0, Stride1, Stride2, Stride3;

    /// <summary>The view <paramref name="view"/> at the pinned address of its base.</summary>
    public RawStrided4(T* pinnedBase, scoped in ReadOnlyStrided4<T> view)
    {
        Base = pinnedBase;
        (Length0, Length1, Length2, Length3) = (view.Length0, view.Length1, view.Length2, view.Length3);
        (Stride0, Stride1, Stride2, Stride3) = (view.Stride0, view.Stride1, view.Stride2, view.Stride3);
    }

    /// <summary>The view <paramref name="view"/> at the pinned address of its base.</summary>
    public RawStrided4(T* pinnedBase, scoped in Strided4<T> view)
    {
        Base = pinnedBase;
        (Length0, Length1, Length2, Length3) = (view.Length0, view.Length1, view.Length2, view.Length3);
        (Stride0, Stride1, Stride2, Stride3) = (view.Stride0, view.Stride1, view.Stride2, view.Stride3);
    }

    /// <summary>A view from its parts (for views carved out of a larger tensor, such as one sequence of a packed batch).</summary>
    public RawStrided4(T* pinnedBase, int length0, int length1, int length2, int length3, nint stride0, nint stride1, nint stride2, nint stride3)
    {
        Base = pinnedBase;
        (Length0, Length1, Length2, Length3) = (length0, length1, length2, length3);
        (Stride0, Stride1, Stride2, Stride3) = (stride0, stride1, stride2, stride3);
    }

    /// <summary>True for the empty (absent) view.</summary>
    public bool IsEmpty => Base == null;

    /// <summary>Element offset of [i0, i1, i2, i3] from <see cref="Base"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Offset(nint i0, nint i1, nint i2, nint i3) => i0 * Stride0 + i1 * Stride1 + i2 * Stride2 + i3 * Stride3;

    /// <summary>The element at [i0, i1, i2, i3] (no bounds check: kernels index inside validated lengths).</summary>
    public ref T this[nint i0, nint i1, nint i2, nint i3]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref Base[Offset(i0, i1, i2, i3)];
    }
}
