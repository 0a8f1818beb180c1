using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// Strides for the memory layouts attention inputs come in. Strides are in elements and never negative, as
/// System.Numerics.Tensors requires. Logical order stays [batch, heads, seq, headDim]; a layout only reorders memory.
/// </summary>
public static class TensorLayout
{
    /// <summary>Row-major strides: the last dimension is contiguous.</summary>
    public static nint[] Contiguous(ReadOnlySpan<nint> lengths)
    {
        var strides = new nint[lengths.Length];
        nint stride = 1;
        for (int d = lengths.Length - 1; d >= 0; d--)
        {
            strides[d] = stride;
            stride *= Math.Max(lengths[d], 1);
        }
        return strides;
    }

    /// <summary>
    /// Strides of a tensor whose memory holds the logical dimensions in <paramref name="memoryOrder"/>
    /// (outermost first). FlashAttention's [B, S, H, D] memory seen as logical [B, H, S, D] is memoryOrder {0, 2, 1, 3}.
    /// </summary>
    public static nint[] Permuted(ReadOnlySpan<nint> lengths, ReadOnlySpan<int> memoryOrder)
    {
        if (memoryOrder.Length != lengths.Length)
            throw new ArgumentException($"memoryOrder has {memoryOrder.Length} entries; expected {lengths.Length}, one per dimension.", nameof(memoryOrder));
        var seen = new bool[lengths.Length];
        foreach (int d in memoryOrder)
        {
            if ((uint)d >= (uint)lengths.Length || seen[d])
                throw new ArgumentException($"memoryOrder [{string.Join(", ", memoryOrder.ToArray())}] is not a permutation of 0..{lengths.Length - 1}.", nameof(memoryOrder));
            seen[d] = true;
        }
        var strides = new nint[lengths.Length];
        nint stride = 1;
        for (int m = memoryOrder.Length - 1; m >= 0; m--)
        {
            strides[memoryOrder[m]] = stride;
            stride *= Math.Max(lengths[memoryOrder[m]], 1);
        }
        return strides;
    }

    /// <summary>
    /// Row-major strides where every dimension but the outermost is laid out as if <paramref name="padding"/>
    /// elements longer: the padded, non-dense layouts that slices of bigger buffers produce.
    /// </summary>
    public static nint[] Padded(ReadOnlySpan<nint> lengths, nint padding)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(padding);
        var strides = new nint[lengths.Length];
        nint stride = 1;
        for (int d = lengths.Length - 1; d >= 0; d--)
        {
            strides[d] = stride;
            stride *= Math.Max(lengths[d], 1) + padding;
        }
        return strides;
    }

    /// <summary>
    /// Strides to hand to System.Numerics.Tensors spans: 10.0.x rejects a length-1 dimension with a nonzero stride as
    /// "outside the provided memory" although that stride is never used, so such dimensions get stride 0.
    /// </summary>
    internal static nint[] SpanStrides(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides)
    {
        var result = strides.ToArray();
        for (int d = 0; d < result.Length; d++) if (lengths[d] == 1) result[d] = 0;
        return result;
    }

    /// <summary>
    /// A tensor span over memory you already have, with the lengths and strides (in elements) it is laid out with: a
    /// [B, S, H, D] buffer seen as logical [B, H, S, D] (strides from <see cref="Permuted"/>), a KV cache with spare
    /// capacity (the sequence stride of the full buffer), one head of a packed QKV buffer. System.Numerics.Tensors
    /// refuses a length-1 dimension with a nonzero stride ("outside the provided memory") although that stride is never
    /// used: such strides become 0 here. Stride 0 on a longer dimension broadcasts it (read-only use).
    /// </summary>
    /// <exception cref="ArgumentException">a stride count, negative length or stride, memory shorter than the layout
    /// reaches, or a layout under which distinct elements share memory; the message names it and the values.</exception>
    public static TensorSpan<T> View<T>(Span<T> memory, scoped ReadOnlySpan<nint> lengths, scoped ReadOnlySpan<nint> strides)
    {
        Span<nint> spanStrides = lengths.Length <= 16 ? stackalloc nint[lengths.Length] : new nint[lengths.Length];
        ViewStrides(lengths, strides, memory.Length, spanStrides);
        return new TensorSpan<T>(memory, lengths, spanStrides);
    }

    /// <summary>A read-only <see cref="View{T}(Span{T}, ReadOnlySpan{nint}, ReadOnlySpan{nint})"/>.</summary>
    public static ReadOnlyTensorSpan<T> ReadOnlyView<T>(ReadOnlySpan<T> memory, scoped ReadOnlySpan<nint> lengths, scoped ReadOnlySpan<nint> strides)
    {
        Span<nint> spanStrides = lengths.Length <= 16 ? stackalloc nint[lengths.Length] : new nint[lengths.Length];
        ViewStrides(lengths, strides, memory.Length, spanStrides);
        return new ReadOnlyTensorSpan<T>(memory, lengths, spanStrides);
    }

    /// <summary>
    /// <see cref="View{T}(Span{T}, ReadOnlySpan{nint}, ReadOnlySpan{nint})"/> over native memory of
    /// <paramref name="elementCount"/> elements at <paramref name="memory"/> (the caller keeps it alive while the span is used).
    /// </summary>
    public static unsafe TensorSpan<T> View<T>(T* memory, nint elementCount, scoped ReadOnlySpan<nint> lengths, scoped ReadOnlySpan<nint> strides) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementCount);
        if (memory is null && elementCount != 0) throw new ArgumentNullException(nameof(memory), $"memory is null but elementCount is {elementCount}.");
        Span<nint> spanStrides = lengths.Length <= 16 ? stackalloc nint[lengths.Length] : new nint[lengths.Length];
        ViewStrides(lengths, strides, elementCount, spanStrides);
        return new TensorSpan<T>(memory, elementCount, lengths, spanStrides);
    }

    /// <summary>
    /// The strides a view hands System.Numerics.Tensors (into <paramref name="result"/>), after the checks that make its
    /// refusal impossible. Allocation-free: views are built per call.
    /// </summary>
    private static void ViewStrides(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, nint available, Span<nint> result)
    {
        if (strides.Length != lengths.Length)
            throw new ArgumentException($"strides has {strides.Length} entries; expected {lengths.Length}, one per dimension.", nameof(strides));
        bool broadcast = false;
        for (int d = 0; d < lengths.Length; d++)
        {
            if (lengths[d] < 0)
                throw new ArgumentOutOfRangeException(nameof(lengths), $"Dimension {d} has length {lengths[d]}; lengths must not be negative.");
            if (strides[d] < 0)
                throw new ArgumentOutOfRangeException(nameof(strides), $"Dimension {d} has stride {strides[d]}; strides must not be negative.");
            result[d] = lengths[d] <= 1 ? 0 : strides[d];
            broadcast |= lengths[d] > 1 && strides[d] == 0;
        }
        nint needed = StorageLength(lengths, result);
        if (needed > available)
            throw new ArgumentException(
                $"Lengths [{string.Join(", ", lengths.ToArray())}] with strides [{string.Join(", ", strides.ToArray())}] reach {needed} elements; the memory holds {available}.", "memory");
        // Broadcast dimensions aside, no two elements may share memory (System.Numerics.Tensors' rule).
        Span<nint> kept = lengths.Length <= 16 ? stackalloc nint[lengths.Length] : new nint[lengths.Length];
        Span<nint> keptStrides = lengths.Length <= 16 ? stackalloc nint[lengths.Length] : new nint[lengths.Length];
        int count = 0;
        for (int d = 0; d < lengths.Length; d++)
            if (!(broadcast && result[d] == 0)) { kept[count] = lengths[d]; keptStrides[count++] = result[d]; }
        if (!IsNonOverlapping(kept[..count], keptStrides[..count]))
            throw new ArgumentException(
                $"Lengths [{string.Join(", ", lengths.ToArray())}] with strides [{string.Join(", ", strides.ToArray())}] make distinct elements share memory; only stride 0 (broadcast) may repeat an element.", nameof(strides));
    }

    /// <summary>The checks every tensor's layout passes: at least one dimension, lengths of at least 1, one stride per dimension, none negative.</summary>
    internal static void ThrowIfInvalid(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides)
    {
        if (lengths.Length == 0)
            throw new ArgumentException("A tensor needs at least one dimension.", nameof(lengths));
        if (strides.Length != lengths.Length)
            throw new ArgumentException($"strides has {strides.Length} entries; expected {lengths.Length}, one per dimension.", nameof(strides));
        for (int d = 0; d < lengths.Length; d++)
        {
            if (lengths[d] <= 0)
                throw new ArgumentOutOfRangeException(nameof(lengths), $"Dimension {d} has length {lengths[d]}; every dimension must be at least 1.");
            if (strides[d] < 0)
                throw new ArgumentOutOfRangeException(nameof(strides), $"Dimension {d} has stride {strides[d]}; strides must not be negative.");
        }
    }

    /// <summary>Number of elements of storage the layout touches: the largest offset plus one (0 when any length is 0).</summary>
    public static nint StorageLength(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides)
    {
        nint max = 0;
        for (int d = 0; d < lengths.Length; d++)
        {
            if (lengths[d] == 0) return 0;
            max += (lengths[d] - 1) * strides[d];
        }
        return max + 1;
    }

    /// <summary>
    /// True when no two logical elements share memory. Checked conservatively: sorted by stride, each dimension must
    /// step past the whole extent of the smaller ones. Every permuted and padded layout passes; a zero stride on a
    /// dimension longer than 1 (broadcast) does not.
    /// </summary>
    public static bool IsNonOverlapping(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides)
    {
        // Insertion sort of the dimensions longer than 1 by stride, on the stack: this runs on every attention call,
        // which must not allocate.
        Span<int> dims = lengths.Length <= 16 ? stackalloc int[lengths.Length] : new int[lengths.Length];
        int count = 0;
        for (int d = 0; d < lengths.Length; d++)
        {
            if (lengths[d] <= 1) continue;
            int at = count++;
            while (at > 0 && strides[dims[at - 1]] > strides[d]) { dims[at] = dims[at - 1]; at--; }
            dims[at] = d;
        }
        nint extent = 1; // elements spanned by the dimensions seen so far
        foreach (int d in dims[..count])
        {
            if (strides[d] < extent) return false;
            extent = strides[d] * (lengths[d] - 1) + extent;
        }
        return true;
    }
}
