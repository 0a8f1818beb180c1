using System.Runtime.CompilerServices;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// Copies slices of A and B into the panel order the micro-kernel streams, widening BFloat16 and Half to float on
/// the way (so the kernel only ever multiplies floats, and a weight matrix stored in 16 bits costs no extra pass).
/// Panels past the edge of the matrix are zero-filled: their products land in tile lanes that are never stored.
/// Fully optimised from the first call: a large product makes few calls, too few for tiered compilation to replace
/// slow first-tier packing loops before they are timed or used.
/// </summary>
internal static unsafe class GemmPacking
{
    /// <summary>
    /// Rows [row0, row0 + rows) x K [k0, k0 + kc) of A as panels of <paramref name="panelRows"/> rows, each stored
    /// K-major ([kc][panelRows]).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA<TA>(in RawMatrix<TA> a, int row0, int rows, int k0, int kc, int panelRows, float* destination) where TA : unmanaged
    {
        nint columnStride = a.ColumnStride;
        for (int p = 0; p < rows; p += panelRows)
        {
            float* panel = destination + (nint)p * kc;
            for (int r = 0; r < panelRows; r++)
            {
                float* lane = panel + r;
                if (p + r < rows)
                {
                    TA* source = a.At(row0 + p + r, k0);
                    for (int k = 0; k < kc; k++) lane[k * panelRows] = ElementTypes.ToSingle(source[k * columnStride]);
                }
                else
                    for (int k = 0; k < kc; k++) lane[k * panelRows] = 0;
            }
        }
    }

    /// <summary>
    /// K [k0, k0 + kc) x columns [column0, column0 + columns) of B as panels of <paramref name="panelColumns"/>
    /// columns, each stored K-major ([kc][panelColumns]).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB<TB>(in RawMatrix<TB> b, int k0, int kc, int column0, int columns, int panelColumns, float* destination) where TB : unmanaged
    {
        for (int q = 0; q < columns; q += panelColumns)
        {
            float* panel = destination + (nint)q * kc;
            int width = Math.Min(panelColumns, columns - q);
            if (b.ColumnStride == 1)
            {
                // B row-major: each K step is a contiguous run of columns (a vector widening copy).
                for (int k = 0; k < kc; k++)
                {
                    float* row = panel + k * panelColumns;
                    ElementConversion.ToSingle(b.At(k0 + k, column0 + q), 1, width, row);
                    for (int n = width; n < panelColumns; n++) row[n] = 0;
                }
            }
            else
            {
                // B = Wᵀ of a row-major weight (nn.Linear's [out, in]): each column is a contiguous run of K.
                nint rowStride = b.RowStride;
                for (int n = 0; n < panelColumns; n++)
                {
                    float* lane = panel + n;
                    if (n < width)
                    {
                        TB* source = b.At(k0, column0 + q + n);
                        for (int k = 0; k < kc; k++) lane[k * panelColumns] = ElementTypes.ToSingle(source[k * rowStride]);
                    }
                    else
                        for (int k = 0; k < kc; k++) lane[k * panelColumns] = 0;
                }
            }
        }
    }
}
