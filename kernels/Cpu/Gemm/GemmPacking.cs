using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// Copies slices of A and B into the panel order the micro-kernel streams, widening BFloat16 and Half to float on
/// the way (so the kernel only ever multiplies floats, and a weight matrix stored in 16 bits costs no extra pass).
/// Panels past the edge of the matrix are zero-filled: their products land in tile lanes that are never stored.
/// <para>Packing is a transpose in the two common layouts (row-major activations into K-major A panels, nn.Linear's
/// [out, in] weight into K-major B panels), done 8 x 8 with AVX shuffles: element by element it cost about a third of
/// a 1024³ product on two threads. Pure data movement: results are the same bits either way.</para>
/// Fully optimised from the first call: a large product makes few calls, too few for tiered compilation to replace
/// slow first-tier packing loops before they are used.
/// </summary>
internal static unsafe class GemmPacking
{
    /// <summary>Floats of scratch the transposing paths need for 16-bit sources: 8 widened runs of K.</summary>
    public const int WideningFloats = 8 * GemmBlocking.KC;

    /// <summary>Floats a packed A block may be written past its end (the overlapping 8-wide runs of a 6-row panel).</summary>
    public const int PanelSlack = 8;

    /// <summary>
    /// Rows [row0, row0 + rows) x K [k0, k0 + kc) of A as panels of <paramref name="panelRows"/> rows, each stored
    /// K-major ([kc][panelRows]). <paramref name="widened"/> is <see cref="WideningFloats"/> of scratch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA<TA>(in RawMatrix<TA> a, int row0, int rows, int k0, int kc, int panelRows, float* destination, float* widened) where TA : unmanaged
    {
        if (a.RowStride == 1)
        {
            PackTransposedA(a, row0, rows, k0, kc, panelRows, destination);
            return;
        }
        nint columnStride = a.ColumnStride;
        int blocked = Transpose8x8.IsSupported && columnStride == 1 && panelRows <= 8 ? kc & ~7 : 0;
        float** sources = stackalloc float*[8];
        for (int p = 0; p < rows; p += panelRows)
        {
            float* panel = destination + (nint)p * kc;
            int done = 0;
            if (blocked > 0 && rows - p >= panelRows)
            {
                // Each run of 8 stored at a pitch of panelRows (< 8) spills its spare lanes onto the start of the next
                // run, which is stored after it (the last one onto the next panel, or the block's slack).
                for (int r = 0; r < 8; r++)
                    sources[r] = r < panelRows ? Floats(a.At(row0 + p + r, k0), blocked, widened + r * GemmBlocking.KC) : sources[panelRows - 1];
                Transpose8x8.Rows(sources, blocked, panel, panelRows);
                done = blocked;
            }
            for (int r = 0; r < panelRows; r++)
            {
                float* lane = panel + r;
                if (p + r < rows)
                {
                    TA* source = a.At(row0 + p + r, k0);
                    for (int k = done; k < kc; k++) lane[k * panelRows] = ElementTypes.ToSingle(source[k * columnStride]);
                }
                else
                    for (int k = done; k < kc; k++) lane[k * panelRows] = 0;
            }
        }
    }

    /// <summary>
    /// <see cref="PackA"/> for A transposed in memory (a gradient's dPᵀ · X): each K step of the whole block is one
    /// contiguous run of its rows, dealt out to the panels. Read K step by K step, A is read once, in order; read panel
    /// by panel, every step was a few floats from another row, rows a multiple of 4 KB apart that all fall in one L1 set.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTransposedA<TA>(in RawMatrix<TA> a, int row0, int rows, int k0, int kc, int panelRows, float* destination) where TA : unmanaged
    {
        int whole = rows / panelRows * panelRows;
        bool sixes = typeof(TA) == typeof(float) && panelRows == 6 && Vector128.IsHardwareAccelerated;
        for (int k = 0; k < kc; k++)
        {
            float* step = destination + k * panelRows;
            if (typeof(TA) == typeof(float))
            {
                float* source = (float*)a.At(row0, k0 + k);
                int p = 0;
                if (sixes)
                    for (; p < whole; p += 6)
                    {
                        // 4 + 2 floats: an 8-wide store would spill onto the next K step, written before it at k = 0.
                        float* target = step + (nint)p * kc;
                        Vector128.Store(Vector128.Load(source + p), target);
                        *(long*)(target + 4) = *(long*)(source + p + 4);
                    }
                for (; p < rows; p++) step[(nint)(p / panelRows) * panelRows * kc + p % panelRows] = source[p];
            }
            else
                for (int p = 0; p < rows; p += panelRows)
                    ElementConversion.ToSingle(a.At(row0 + p, k0 + k), 1, Math.Min(panelRows, rows - p), step + (nint)p * kc);
            if (whole < rows)
                for (int r = rows - whole; r < panelRows; r++) step[(nint)whole * kc + r] = 0;
        }
    }

    /// <summary>
    /// K [k0, k0 + kc) x columns [column0, column0 + columns) of B as panels of <paramref name="panelColumns"/>
    /// columns, each stored K-major ([kc][panelColumns]). <paramref name="widened"/> is <see cref="WideningFloats"/> of scratch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB<TB>(in RawMatrix<TB> b, int k0, int kc, int column0, int columns, int panelColumns, float* destination, float* widened) where TB : unmanaged
    {
        float** sources = stackalloc float*[8];
        for (int q = 0; q < columns; q += panelColumns)
        {
            float* panel = destination + (nint)q * kc;
            int width = Math.Min(panelColumns, columns - q);
            if (b.ColumnStride == 1)
            {
                // B row-major: each K step is a contiguous run of columns (a vector widening copy).
                // Whole float panels are copied with vector moves: a memmove call per K step of 16-32 floats cost
                // 2-3% of a layer backward (where dX = dP · W_in reads W_in this way).
                bool vectorCopy = typeof(TB) == typeof(float) && width == panelColumns && panelColumns % 8 == 0 && Vector256.IsHardwareAccelerated;
                for (int k = 0; k < kc; k++)
                {
                    float* row = panel + k * panelColumns;
                    if (vectorCopy)
                    {
                        float* source = (float*)b.At(k0 + k, column0 + q);
                        for (int n = 0; n < panelColumns; n += 8) Vector256.Store(Vector256.Load(source + n), row + n);
                        continue;
                    }
                    ElementConversion.ToSingle(b.At(k0 + k, column0 + q), 1, width, row);
                    for (int n = width; n < panelColumns; n++) row[n] = 0;
                }
                continue;
            }
            // B = Wᵀ of a row-major weight (nn.Linear's [out, in]): each column is a contiguous run of K, transposed
            // 8 columns at a time where it can be.
            nint rowStride = b.RowStride;
            int blocked = Transpose8x8.IsSupported && rowStride == 1 ? kc & ~7 : 0, columnsBlocked = 0;
            if (blocked > 0)
                for (; columnsBlocked + 8 <= width; columnsBlocked += 8)
                {
                    for (int i = 0; i < 8; i++)
                        sources[i] = Floats(b.At(k0, column0 + q + columnsBlocked + i), blocked, widened + i * GemmBlocking.KC);
                    Transpose8x8.Rows(sources, blocked, panel + columnsBlocked, panelColumns);
                }
            for (int n = 0; n < panelColumns; n++)
            {
                float* lane = panel + n;
                int first = n < columnsBlocked ? blocked : 0;
                if (n < width)
                {
                    TB* source = b.At(k0, column0 + q + n);
                    for (int k = first; k < kc; k++) lane[k * panelColumns] = ElementTypes.ToSingle(source[k * rowStride]);
                }
                else
                    for (int k = first; k < kc; k++) lane[k * panelColumns] = 0;
            }
        }
    }

    /// <summary><paramref name="count"/> contiguous elements as floats: the source itself for float, else widened into <paramref name="scratch"/>.</summary>
    private static float* Floats<T>(T* source, int count, float* scratch) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return (float*)source;
        ElementConversion.ToSingle(source, 1, count, scratch);
        return scratch;
    }
}
