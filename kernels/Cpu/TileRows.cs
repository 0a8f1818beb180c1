namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Which rows a tile holds. Rows of one (batch, KV head) interleave its query heads: row ρ is query position
/// ρ / group of query head kvHead · group + ρ % group. Interleaving keeps a tile's query positions in a narrow range,
/// so causal and window masks can still skip whole key blocks under grouped-query attention.
/// </summary>
internal readonly struct TileRows
{
    public TileRows(int firstRow, int count, int groupSize, int kvHead)
    {
        FirstRow = firstRow;
        Count = count;
        GroupSize = groupSize;
        KvHead = kvHead;
        _groupShift = groupSize > 0 && (groupSize & (groupSize - 1)) == 0 ? System.Numerics.BitOperations.Log2((uint)groupSize) : -1;
    }

    /// <summary>
    /// log2 of a power-of-two group (1, 2, 4, 8: every common GQA ratio), else −1. Rows are never negative, so a
    /// shift and a mask give the quotient and remainder: two integer divisions per row in the epilogue were 4% of a
    /// B128 H8 N64 D128 profile.
    /// </summary>
    private readonly int _groupShift;

    public int FirstRow { get; }
    /// <summary>Valid rows; the tile's remaining rows are padding, computed but never written.</summary>
    public int Count { get; }
    public int GroupSize { get; }
    public int KvHead { get; }

    public int Query(int row) => _groupShift >= 0 ? (FirstRow + row) >> _groupShift : (FirstRow + row) / GroupSize;
    public int Head(int row) => KvHead * GroupSize + (_groupShift >= 0 ? (FirstRow + row) & (GroupSize - 1) : (FirstRow + row) % GroupSize);
    public int FirstQuery => FirstRow / GroupSize;
    public int LastQuery => (FirstRow + Count - 1) / GroupSize;

    /// <summary>
    /// The keys the band lets some row of the tile see: from the start of the key block holding the first of them to
    /// one past the last. Blocks outside are never touched.
    /// </summary>
    public (long FirstBlock, long KeyEnd) VisibleKeys(DiagonalBand band, int keyLength, int keyBlock)
    {
        long keyBegin = band.FirstKey(FirstQuery);
        return (keyBegin / keyBlock * keyBlock, band.EndKey(LastQuery, keyLength));
    }

    /// <summary>First row whose query position is at least <paramref name="query"/> (clamped to [0, Count]).</summary>
    public int FirstRowAtOrAfter(long query) => (int)Math.Clamp(query * GroupSize - FirstRow, 0, Count);

    /// <summary>One past the last row whose query position is at most <paramref name="query"/> (clamped to [0, Count]).</summary>
    public int EndRowAtOrBefore(long query) => (int)Math.Clamp((query + 1) * GroupSize - FirstRow, 0, Count);
}
