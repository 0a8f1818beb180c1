using System.Runtime.CompilerServices;

namespace AttentionEngine.Kernels.Tensors;

/// <summary>
/// A read-only 4-D strided view: a base reference and element strides. What kernels see of a tensor.
/// Broadcast dimensions have stride 0; lower-rank tensors are padded with length-1 dimensions.
/// A reference plus strides (not a span) so views of more than 2^31 elements need no pinning and no pointer.
/// </summary>
public readonly ref struct ReadOnlyStrided4<T>
{
    /// <summary>Reference to element [0, 0, 0, 0]; a null reference for an empty view.</summary>
    public readonly ref readonly T Base;
    /// <summary>Length of each of the four dimensions.</summary>
    public readonly int Length0, Length1, Length2, Length3;
    /// <summary>Element stride of each dimension (0 where a dimension broadcasts).</summary>
    public readonly nint Stride0, Stride1, Stride2, Stride3;

    /// <summary>A view from a base reference and four lengths and strides.</summary>
    public ReadOnlyStrided4(ref readonly T baseRef, scoped ReadOnlySpan<int> lengths, scoped ReadOnlySpan<nint> strides)
    {
        Base = ref baseRef;
        (Length0, Length1, Length2, Length3) = (lengths[0], lengths[1], lengths[2], lengths[3]);
        (Stride0, Stride1, Stride2, Stride3) = (strides[0], strides[1], strides[2], strides[3]);
    }

    /// <summary>True for the default (absent) view.</summary>
    public bool IsEmpty => Unsafe.IsNullRef(in Base);

    /// <summary>Element offset of [i0, i1, i2, i3] from <see cref="Base"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Offset(nint i0, nint i1, nint i2, nint i3) => i0 * Stride0 + i1 * Stride1 + i2 * Stride2 + i3 * Stride3;

    /// <summary>The element at a logical index (no bounds check: kernels index inside validated shapes).</summary>
    public ref readonly T this[nint i0, nint i1, nint i2, nint i3]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref Unsafe.Add(ref Unsafe.AsRef(in Base), Offset(i0, i1, i2, i3));
    }
}

/// <summary>A writable 4-D strided view; see <see cref="ReadOnlyStrided4{T}"/>.</summary>
public readonly ref struct Strided4<T>
{
    /// <summary>Reference to element [0, 0, 0, 0]; a null reference for an empty view.</summary>
    public readonly ref T Base;
    /// <summary>Length of each of the four dimensions.</summary>
    public readonly int Length0, Length1, Length2, Length3;
    /// <summary>Element stride of each dimension (0 where a dimension broadcasts).</summary>
    public readonly nint Stride0, Stride1, Stride2, Stride3;

    /// <summary>A view from a base reference and four lengths and strides.</summary>
    public Strided4(ref T baseRef, scoped ReadOnlySpan<int> lengths, scoped ReadOnlySpan<nint> strides)
    {
        Base = ref baseRef;
        (Length0, Length1, Length2, Length3) = (lengths[0], lengths[1], lengths[2], lengths[3]);
        (Stride0, Stride1, Stride2, Stride3) = (strides[0], strides[1], strides[2], strides[3]);
    }

    /// <summary>True for the empty (absent) view.</summary>
    public bool IsEmpty => Unsafe.IsNullRef(ref Base);

    /// <summary>Element offset of [i0, i1, i2, i3] from <see cref="Base"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public nint Offset(nint i0, nint i1, nint i2, nint i3) => i0 * Stride0 + i1 * Stride1 + i2 * Stride2 + i3 * Stride3;

    /// <summary>The element at [i0, i1, i2, i3] (no bounds check: kernels index inside validated lengths).</summary>
    public ref T this[nint i0, nint i1, nint i2, nint i3]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref Unsafe.Add(ref Base, Offset(i0, i1, i2, i3));
    }

    /// <summary>The same view, read-only.</summary>
    public ReadOnlyStrided4<T> AsReadOnly() =>
        new(ref Base, [Length0, Length1, Length2, Length3], [Stride0, Stride1, Stride2, Stride3]);
}
