using System.Numerics.Tensors;
using AttentionEngine.Kernels;

namespace AttentionEngine.Tests.Modules;

/// <summary>How a test matrix sits in memory.</summary>
public enum MatrixLayout
{
    RowMajor,
    ColumnMajor,
    /// <summary>Row-major with 3 spare elements after each row (a slice of a wider buffer).</summary>
    PaddedRows,
    /// <summary>Column-major with 5 spare elements after each column.</summary>
    PaddedColumns,
}

/// <summary>
/// A matrix over a managed array in a chosen layout, for tests: spare elements hold NaN, so a kernel that reads
/// outside the matrix poisons its result.
/// </summary>
public sealed class TestMatrix<T> where T : unmanaged
{
    public T[] Memory { get; }
    public int Rows { get; }
    public int Columns { get; }
    public nint RowStride { get; }
    public nint ColumnStride { get; }

    public TestMatrix(int rows, int columns, MatrixLayout layout)
    {
        (Rows, Columns) = (rows, columns);
        (RowStride, ColumnStride) = layout switch
        {
            MatrixLayout.RowMajor => ((nint)columns, (nint)1),
            MatrixLayout.ColumnMajor => (1, rows),
            MatrixLayout.PaddedRows => (columns + 3, 1),
            _ => (1, rows + 5),
        };
        long size = rows == 0 || columns == 0 ? 0 : (rows - 1) * RowStride + (columns - 1) * ColumnStride + 1;
        Memory = new T[size + 7]; // 7 more past the end, also NaN
        Array.Fill(Memory, ElementTypes.FromSingle<T>(float.NaN));
    }

    public ref T this[int row, int column] => ref Memory[row * RowStride + column * ColumnStride];

    public static TestMatrix<T> Random(int rows, int columns, MatrixLayout layout, Random random)
    {
        var m = new TestMatrix<T>(rows, columns, layout);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                m[r, c] = ElementTypes.FromDouble<T>(NormalSample(random));
        return m;
    }

    public double At(int row, int column) => ElementTypes.ToDouble(this[row, column]);

    public TensorSpan<T> Span => TensorLayout.View(Memory.AsSpan(), [Rows, Columns], [RowStride, ColumnStride]);

    public ReadOnlyTensorSpan<T> ReadOnlySpan => TensorLayout.ReadOnlyView<T>(Memory, [Rows, Columns], [RowStride, ColumnStride]);

    /// <summary>The logical elements, row by row, as doubles.</summary>
    public double[] ToDoubles()
    {
        var values = new double[Rows * Columns];
        for (int r = 0; r < Rows; r++)
            for (int c = 0; c < Columns; c++)
                values[r * Columns + c] = At(r, c);
        return values;
    }

    private static double NormalSample(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
