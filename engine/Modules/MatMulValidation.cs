using System.Runtime.CompilerServices;
using AttentionEngine.Kernels;

namespace AttentionEngine;

/// <summary>Shape, stride and aliasing checks of a matrix product, before any kernel runs.</summary>
internal static class MatMulValidation
{
    /// <summary>Throws unless a is [M, K], b is [K, N], c is [M, N], the bias is empty or N long, and c overlaps neither input nor itself.</summary>
    public static void Check<TA, TB, TC>(
        scoped in MatrixView<TA> a, scoped in MatrixView<TB> b, scoped in MatrixView<TC> c, int biasLength, int? maxDegreeOfParallelism,
        string aName, string bName, string cName, string biasName)
    {
        ElementTypes.ThrowIfUnsupported<TA>();
        ElementTypes.ThrowIfUnsupported<TB>();
        ElementTypes.ThrowIfUnsupported<TC>();
        nint m = a.Rows, k = a.Columns, n = b.Columns;
        if (b.Rows != k)
            throw new ArgumentException($"{bName} is {b.Shape}; its rows must be {k} to match the columns of {aName} {a.Shape} (the shared K).", bName);
        if (c.Rows != m || c.Columns != n)
            throw new ArgumentException($"{cName} is {c.Shape}; expected [{m}, {n}] ({aName} rows x {bName} columns).", cName);
        if (m > int.MaxValue || k > int.MaxValue)
            throw new ArgumentException($"{aName} is {a.Shape}; each dimension may be at most {int.MaxValue}.", aName);
        if (n > int.MaxValue)
            throw new ArgumentException($"{bName} is {b.Shape}; each dimension may be at most {int.MaxValue}.", bName);
        if (biasLength != 0 && biasLength != n)
            throw new ArgumentException($"{biasName} has {biasLength} elements; expected {n} (one per column of {cName}) or none.", biasName);
        if (maxDegreeOfParallelism is < 1)
            throw new ArgumentException($"maxDegreeOfParallelism is {maxDegreeOfParallelism}; expected at least 1 (or null for all cores).", nameof(maxDegreeOfParallelism));
        if (SelfOverlaps(c))
            throw new ArgumentException(
                $"{cName} is {c.Shape} with strides [{c.RowStride}, {c.ColumnStride}]: several of its elements share memory, so the product has no single place to go.", cName);
        if (m == 0 || n == 0 || k == 0) return;
        var written = Range(c);
        if (written.Overlaps(Range(a)))
            throw new ArgumentException($"{cName} overlaps {aName} in memory; the product cannot be written over its own input.", cName);
        if (written.Overlaps(Range(b)))
            throw new ArgumentException($"{cName} overlaps {bName} in memory; the product cannot be written over its own input.", cName);
    }

    /// <summary>Whether two distinct indices can share an address (the sufficient test: the longer stride spans the shorter dimension).</summary>
    private static bool SelfOverlaps<T>(scoped in MatrixView<T> view)
    {
        bool rows = view.Rows > 1, columns = view.Columns > 1;
        if (!rows || !columns) return (rows && view.RowStride == 0) || (columns && view.ColumnStride == 0);
        var (inner, innerLength, outer) = view.ColumnStride <= view.RowStride
            ? (view.ColumnStride, view.Columns, view.RowStride) : (view.RowStride, view.Rows, view.ColumnStride);
        return inner == 0 || outer < inner * innerLength;
    }

    private readonly record struct ByteRange(nuint Start, nuint End)
    {
        public bool Overlaps(ByteRange other) => Start < other.End && other.Start < End;
    }

    private static unsafe ByteRange Range<T>(scoped in MatrixView<T> view)
    {
        nuint start = (nuint)Unsafe.AsPointer(ref view.Origin);
        nuint elements = (nuint)TensorLayout.StorageLength([view.Rows, view.Columns], [view.RowStride, view.ColumnStride]);
        return new ByteRange(start, start + elements * (nuint)Unsafe.SizeOf<T>());
    }
}
