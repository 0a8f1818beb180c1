using ILGPU;

namespace AttentionEngine.Kernels.IlGpu;

/// <summary>
/// A mask functor that holds managed arrays (DocumentMask's ids, a user's lookup table) cannot be a kernel argument.
/// For those the host evaluates the functor on the pairs of partial blocks only (the kernels never ask it about
/// other pairs) and this mask reads the answers back: memory is one byte per pair of a partial block, never Lq × Lk
/// unless every block is partial.
/// </summary>
internal struct PartialBlockPairs : IMaskMod
{
    /// <summary>Per block (same index as the block kinds): its slot in <see cref="Pairs"/>, or −1 when not partial.</summary>
    public ArrayView<int> Slots;

    /// <summary>QueryBlock × KeyBlock bytes per slot, row-major within the block; 1 keeps the pair.</summary>
    public ArrayView<byte> Pairs;

    /// <summary>The grid of <see cref="Slots"/>: the block mask's, over every (batch, head) of the call.</summary>
    public BlockGrid Blocks;

    public readonly bool Keep(int batch, int head, int query, int key)
    {
        int slot = Slots[Blocks.IndexOfPair(batch, head, query, key)];
        if (slot < 0) return false;
        long pair = (long)slot * Blocks.QueryBlock * Blocks.KeyBlock + (long)(query % Blocks.QueryBlock) * Blocks.KeyBlock + key % Blocks.KeyBlock;
        return Pairs[pair] != 0;
    }
}
