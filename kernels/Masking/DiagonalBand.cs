namespace AttentionEngine;

/// <summary>
/// The positional part of a mask, resolved for one (Lq, Lk): query i may see key j exactly when
/// <c>Lo &lt;= j - i &lt;= Hi</c>. Causal and sliding-window masks in any alignment, and their intersections, are all
/// such bands, so kernels test two integer bounds and can skip whole tiles outside the band.
/// </summary>
internal readonly record struct DiagonalBand(long Lo, long Hi)
{
    /// <summary>Bound used for "no limit": far outside any index difference a tensor can have.</summary>
    public const long Unbounded = 1L << 40;

    /// <summary>A band that hides nothing.</summary>
    public static DiagonalBand All => new(-Unbounded, Unbounded);

    /// <summary>True when the band hides no pair of an Lq x Lk problem.</summary>
    public bool CoversAll(int queryLength, int keyLength) => Lo <= -(queryLength - 1) && Hi >= keyLength - 1;

    /// <summary>True when <paramref name="query"/> may see <paramref name="key"/> under the band.</summary>
    public bool Contains(long query, long key) => key - query >= Lo && key - query <= Hi;

    /// <summary>First visible key of a query row (may be past the last key when the row is empty).</summary>
    public long FirstKey(long query) => Math.Max(0, query + Lo);

    /// <summary>One past the last visible key of a query row, clamped to the key length.</summary>
    public long EndKey(long query, int keyLength) => Math.Min(keyLength, query + Hi + 1);

    /// <summary>First query that sees <paramref name="key"/> (may be past the last query when no row sees it).</summary>
    public long FirstQuery(long key) => Math.Max(0, key - Hi);

    /// <summary>Last query that sees <paramref name="key"/>, clamped to the query length (below the first when none does).</summary>
    public long LastQuery(long key, int queryLength) => Math.Min(queryLength - 1L, key - Lo);

    /// <summary>True when every pair of queries [firstQuery, lastQuery] × keys [firstKey, lastKey] lies in the band.</summary>
    public bool ContainsAll(long firstQuery, long lastQuery, long firstKey, long lastKey) =>
        firstKey - lastQuery >= Lo && lastKey - firstQuery <= Hi;

    /// <summary>True when no pair of queries [firstQuery, lastQuery] × keys [firstKey, lastKey] lies in the band.</summary>
    public bool ExcludesAll(long firstQuery, long lastQuery, long firstKey, long lastKey) =>
        lastKey - firstQuery < Lo || firstKey - lastQuery > Hi;

    /// <summary>The intersection of two bands.</summary>
    public DiagonalBand Intersect(DiagonalBand other) => new(Math.Max(Lo, other.Lo), Math.Min(Hi, other.Hi));
}
