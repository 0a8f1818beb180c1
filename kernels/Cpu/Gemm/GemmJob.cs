namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>A matrix over pinned or native memory: element (row, column) at <c>Base[row · RowStride + column · ColumnStride]</c>.</summary>
internal readonly unsafe struct RawMatrix<T>(T* @base, int rows, int columns, nint rowStride, nint columnStride) where T : unmanaged
{
    public readonly T* Base = @base;
    public readonly int Rows = rows, Columns = columns;
    public readonly nint RowStride = rowStride, ColumnStride = columnStride;

    public T* At(nint row, nint column) => Base + row * RowStride + column * ColumnStride;
}

/// <summary>
/// One product C = A · B (+ bias, one value per column of C), as plain data the worker threads share: A is M x K, B is
/// K x N, C is M x N, each with any non-negative strides (a transposed operand is just swapped strides). The engine
/// validates shapes, strides and aliasing before it builds one.
/// </summary>
internal readonly unsafe struct GemmJob<TA, TB, TC> where TA : unmanaged where TB : unmanaged where TC : unmanaged
{
    public required RawMatrix<TA> A { get; init; }
    public required RawMatrix<TB> B { get; init; }
    public required RawMatrix<TC> C { get; init; }

    /// <summary>N values (B's element type, as a layer keeps its bias beside its weight) added to every row of C, or null.</summary>
    public TB* Bias { get; init; }

    public int M => C.Rows;
    public int N => C.Columns;
    public int K => A.Columns;

    /// <summary>2·M·N·K: the multiply-adds counted as two operations each.</summary>
    public double Flops => 2.0 * M * N * K;

    /// <summary>
    /// The work the thread count is chosen from (<see cref="Threading.WorkEstimate"/>): the FLOPs and A's, B's and C's
    /// bytes. A one-token projection (M = 1) streams its whole weight for 2 operations per element: by FLOPs alone a
    /// 1024 x 3072 one would stay on one thread.
    /// </summary>
    public double Work => Flops + Threading.WorkEstimate.OperationsPerByte *
        ((double)M * K * sizeof(TA) + (double)N * K * sizeof(TB) + (double)M * N * sizeof(TC));
}
