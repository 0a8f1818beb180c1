namespace AttentionEngine;

/// <summary>Builds <see cref="BlockMask{TMask}"/>s.</summary>
public static class BlockMask
{
    /// <summary>Block size suited to the CPU kernel (its key block).</summary>
    public const int DefaultBlockSize = Kernels.Cpu.CpuKeyBlock.Keys;

    /// <summary>Block size suited to the CUDA kernels' tiles.</summary>
    public const int CudaBlockSize = 128;

    /// <summary>
    /// Classifies every block of <paramref name="mask"/>: by arithmetic when it is an <see cref="IBlockClassifiedMask"/>
    /// (causal, windows, prefix-LM, documents, global tokens, and/or/not of those), else by evaluating its pairs
    /// (stopping as soon as a block proves mixed), in parallel over query blocks.
    /// </summary>
    /// <param name="batch">batch size, or 1 for a mask that does not depend on the batch</param>
    /// <param name="heads">query heads, or 1 for a mask that does not depend on the head</param>
    public static BlockMask<TMask> Create<TMask>(TMask mask, int batch, int heads, int queryLength, int keyLength,
        int queryBlock = DefaultBlockSize, int keyBlock = DefaultBlockSize) where TMask : struct, IMaskMod
    {
        ThrowIfBadShape(batch, heads, queryLength, keyLength, queryBlock, keyBlock);
        FunctorShape.ThrowIfIncompatible(mask, batch, heads, queryLength, keyLength, nameof(mask));
        var grid = Grid(batch, heads, queryLength, keyLength, queryBlock, keyBlock);
        var kinds = new BlockKind[grid.Length];
        Parallel.For(0, batch * heads * grid.QueryBlocks, row =>
        {
            int qb = row % grid.QueryBlocks, h = row / grid.QueryBlocks % heads, b = row / grid.QueryBlocks / heads;
            int q0 = qb * queryBlock, q1 = Math.Min(queryLength, q0 + queryBlock);
            for (int kb = 0; kb < grid.KeyBlocks; kb++)
            {
                int k0 = kb * keyBlock, k1 = Math.Min(keyLength, k0 + keyBlock);
                kinds[grid.Index(b, h, qb, kb)] = BlockClassification.Of(mask, b, h, q0, q1, k0, k1);
            }
        });
        return new BlockMask<TMask>(mask, batch, heads, queryLength, keyLength, queryBlock, keyBlock, kinds);
    }

    /// <summary>
    /// A block mask from a dense block layout (for example one computed elsewhere or drawn at random):
    /// <paramref name="layout"/> is [batch][heads][queryBlocks][keyBlocks]. <paramref name="mask"/> applies in partial
    /// blocks; the layout is trusted for empty and full ones.
    /// </summary>
    public static BlockMask<TMask> FromLayout<TMask>(TMask mask, ReadOnlySpan<BlockKind> layout, int batch, int heads,
        int queryLength, int keyLength, int queryBlock = DefaultBlockSize, int keyBlock = DefaultBlockSize) where TMask : struct, IMaskMod
    {
        ThrowIfBadShape(batch, heads, queryLength, keyLength, queryBlock, keyBlock);
        FunctorShape.ThrowIfIncompatible(mask, batch, heads, queryLength, keyLength, nameof(mask));
        var grid = Grid(batch, heads, queryLength, keyLength, queryBlock, keyBlock);
        if (layout.Length != grid.Length)
            throw new ArgumentException(
                $"layout has {layout.Length} entries; expected batch·heads·queryBlocks·keyBlocks = {batch}·{heads}·{grid.QueryBlocks}·{grid.KeyBlocks} = {grid.Length}.", nameof(layout));
        for (int n = 0; n < layout.Length; n++)
            if (layout[n] is not (BlockKind.Empty or BlockKind.Partial or BlockKind.Full))
                throw new ArgumentException($"layout[{n}] is {(int)layout[n]}, not a BlockKind.", nameof(layout));
        return new BlockMask<TMask>(mask, batch, heads, queryLength, keyLength, queryBlock, keyBlock, layout.ToArray());
    }

    /// <summary>The block grid; the whole mask must fit one array, or the sizes are refused by name.</summary>
    private static BlockGrid Grid(int batch, int heads, int queryLength, int keyLength, int queryBlock, int keyBlock)
    {
        int queryBlocks = BlockGrid.Count(queryLength, queryBlock), keyBlocks = BlockGrid.Count(keyLength, keyBlock);
        // Overflow-safe: each factor is below 2^31, and the product is checked against the array limit step by step.
        double blocks = (double)batch * heads * queryBlocks * keyBlocks;
        if (blocks > Array.MaxLength)
            throw new ArgumentException(
                $"A block mask of batch {batch} × heads {heads} × {queryBlocks} query blocks (queryLength {queryLength} / queryBlock {queryBlock}) × " +
                $"{keyBlocks} key blocks (keyLength {keyLength} / keyBlock {keyBlock}) has {blocks:0} blocks, more than one array holds ({Array.MaxLength}); " +
                "use larger queryBlock and keyBlock.", blocks > Array.MaxLength && keyBlocks > queryBlocks ? nameof(keyBlock) : nameof(queryBlock));
        return new BlockGrid(batch, heads, queryLength, keyLength, queryBlock, keyBlock);
    }

    private static void ThrowIfBadShape(int batch, int heads, int queryLength, int keyLength, int queryBlock, int keyBlock)
    {
        static void Positive(int value, string name)
        {
            if (value < 1) throw new ArgumentOutOfRangeException(name, value, $"{name} is {value}; expected at least 1.");
        }
        Positive(batch, nameof(batch)); Positive(heads, nameof(heads));
        Positive(queryLength, nameof(queryLength)); Positive(keyLength, nameof(keyLength));
        Positive(queryBlock, nameof(queryBlock)); Positive(keyBlock, nameof(keyBlock));
    }
}
