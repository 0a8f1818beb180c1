namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// Cache blocking of the packed GEMM (the BLIS loop nest): a KC-deep slice of B, packed into NR-wide column panels,
/// is reused by every MR-row panel of A's MC x KC block (in L2), and each NR-wide B panel (KC·NR floats, 16 KB at
/// 256-bit vectors) stays in L1 while the MR-row panels stream past it.
/// <para>KC is fixed: every element of C sums its products in K order, in blocks of KC, one FMA chain per block, so the
/// bits of C never depend on the thread count or on how C is cut into tasks.</para>
/// </summary>
internal static class GemmBlocking
{
    /// <summary>Depth of one packed slice of K.</summary>
    public const int KC = 256;

    /// <summary>Rows of A packed together (a multiple of the micro-tile's rows), about 144 KB of floats at KC.</summary>
    public const int MC = 144;

    /// <summary>Largest task tile: columns of C (one packed B block per KC slice, 512 KB of floats at KC).</summary>
    public const int MaxTaskColumns = 512;

    /// <summary>Largest task tile: rows of C.</summary>
    public const int MaxTaskRows = 8 * MC;

    /// <summary>
    /// Task tile of C for <paramref name="threads"/> threads: as large as the caps allow (each task packs its own panels,
    /// so bigger tiles pack less), then halved, the longer side first, until every thread has several tasks.
    /// Results do not depend on it.
    /// </summary>
    public static (int Rows, int Columns) TaskTile(int m, int n, int microRows, int microColumns, int threads)
    {
        int rows = RoundUp(Math.Min(m, MaxTaskRows), microRows), columns = RoundUp(Math.Min(n, MaxTaskColumns), microColumns);
        while (Tasks(m, rows) * (long)Tasks(n, columns) < 3L * threads)
        {
            bool splitRows = rows >= columns ? rows > 4 * microRows : columns <= 4 * microColumns;
            if (splitRows && rows > 4 * microRows) rows = RoundUp((rows + 1) / 2, microRows);
            else if (columns > 4 * microColumns) columns = RoundUp((columns + 1) / 2, microColumns);
            else break;
        }
        return (rows, columns);
    }

    public static int Tasks(int length, int tile) => (length + tile - 1) / tile;

    public static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;
}
