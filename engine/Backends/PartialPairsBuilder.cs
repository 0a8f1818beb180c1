
namespace AttentionEngine;

/// <summary>
/// For a block mask whose functor holds managed references (and so cannot be a kernel argument): evaluates the functor
/// on the host, on the pairs of partial blocks only, for every (batch, head) of the call, in the layout
/// the ILGPU and CUDA kernels read (see PartialBlockPairs in the IlGpu backend).
/// </summary>
internal static class PartialPairsBuilder
{
    /// <summary>The grid of the slots: the block mask's blocks, over every (batch, head) of the call.</summary>
    public static BlockGrid Grid<TMask>(BlockMask<TMask> blocks, int batch, int heads) where TMask : struct, IMaskMod =>
        new(batch, heads, blocks.QueryLength, blocks.KeyLength, blocks.QueryBlock, blocks.KeyBlock);

    public static (int[] Slots, byte[] Pairs) Build<TMask>(BlockMask<TMask> blocks, int batch, int heads) where TMask : struct, IMaskMod
    {
        var grid = Grid(blocks, batch, heads);
        int qbs = grid.QueryBlocks, kbs = grid.KeyBlocks, qBlock = grid.QueryBlock, kBlock = grid.KeyBlock;
        var slots = new int[grid.Length];
        int count = 0;
        for (int b = 0; b < batch; b++)
        for (int h = 0; h < heads; h++)
        for (int qb = 0; qb < qbs; qb++)
        for (int kb = 0; kb < kbs; kb++)
            slots[grid.Index(b, h, qb, kb)] = blocks[b, h, qb, kb] == BlockKind.Partial ? count++ : -1;

        long pairsPerBlock = (long)qBlock * kBlock;
        var pairs = new byte[Math.Max(1, count * pairsPerBlock)];
        var mask = blocks.Mask;
        Parallel.For(0, slots.Length, block =>
        {
            int slot = slots[block];
            if (slot < 0) return;
            int kb = block % kbs, qb = block / kbs % qbs, h = block / kbs / qbs % heads, b = block / kbs / qbs / heads;
            long offset = slot * pairsPerBlock;
            int iEnd = Math.Min(blocks.QueryLength, (qb + 1) * qBlock), jEnd = Math.Min(blocks.KeyLength, (kb + 1) * kBlock);
            for (int i = qb * qBlock; i < iEnd; i++)
            for (int j = kb * kBlock; j < jEnd; j++)
                pairs[offset + (long)(i - qb * qBlock) * kBlock + (j - kb * kBlock)] = mask.Keep(b, h, i, j) ? (byte)1 : (byte)0;
        });
        return (slots, pairs);
    }
}
