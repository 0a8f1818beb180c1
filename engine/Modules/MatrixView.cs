using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace AttentionEngine;

/// <summary>A rank-2 tensor span as its first element, lengths and strides: transposing it is swapping them, no new span needed.</summary>
internal readonly ref struct MatrixView<T>
{
    public readonly ref T Origin;
    public readonly nint Rows, Columns, RowStride, ColumnStride;

    private MatrixView(ref T origin, nint rows, nint columns, nint rowStride, nint columnStride)
    {
        Origin = ref origin;
        (Rows, Columns, RowStride, ColumnStride) = (rows, columns, rowStride, columnStride);
    }

    /// <exception cref="ArgumentException">the tensor is not rank 2 (the message names it).</exception>
    public static MatrixView<T> Of(scoped in ReadOnlyTensorSpan<T> tensor, string name)
    {
        if (tensor.Rank != 2) throw new ArgumentException($"{name} has rank {tensor.Rank}; expected a matrix (rank 2).", name);
        return new(ref Unsafe.AsRef(in tensor.GetPinnableReference()), tensor.Lengths[0], tensor.Lengths[1], tensor.Strides[0], tensor.Strides[1]);
    }

    /// <inheritdoc cref="Of(in ReadOnlyTensorSpan{T}, string)"/>
    public static MatrixView<T> Of(scoped in TensorSpan<T> tensor, string name)
    {
        if (tensor.Rank != 2) throw new ArgumentException($"{name} has rank {tensor.Rank}; expected a matrix (rank 2).", name);
        return new(ref tensor.GetPinnableReference(), tensor.Lengths[0], tensor.Lengths[1], tensor.Strides[0], tensor.Strides[1]);
    }

    /// <summary>A view from its parts (memory the caller has pinned or owns natively).</summary>
    public static MatrixView<T> Over(ref T origin, nint rows, nint columns, nint rowStride, nint columnStride) =>
        new(ref origin, rows, columns, rowStride, columnStride);

    /// <summary>Rows [first, first + count).</summary>
    public MatrixView<T> RowRange(nint first, nint count) => new(ref Unsafe.Add(ref Origin, first * RowStride), count, Columns, RowStride, ColumnStride);

    public MatrixView<T> Transposed() => new(ref Origin, Columns, Rows, ColumnStride, RowStride);

    public string Shape => $"[{Rows}, {Columns}]";
}
