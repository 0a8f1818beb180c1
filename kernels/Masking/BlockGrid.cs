namespace AttentionEngine;

/// <summary>
/// How the blocks of a block mask are laid out: [batch | 1][heads | 1][query blocks][key blocks], row-major, with
/// batch and head clamped to 0 where the mask is the same for all of them. The one index formula of the block mask,
/// the CPU kernels and the ILGPU kernels (the CUDA kernel's <c>block_index</c> is its C++ twin). A plain struct of
/// integers, so it travels into ILGPU kernel parameters as it is.
/// </summary>
internal readonly struct BlockGrid
{
    public readonly int Batch, Heads, QueryBlocks, KeyBlocks, QueryBlock, KeyBlock;

    public BlockGrid(int batch, int heads, int queryLength, int keyLength, int queryBlock, int keyBlock)
    {
        (Batch, Heads, QueryBlock, KeyBlock) = (batch, heads, queryBlock, keyBlock);
        QueryBlocks = Count(queryLength, queryBlock);
        KeyBlocks = Count(keyLength, keyBlock);
    }

    /// <summary>⌈length / block⌉, without overflow for lengths near int.MaxValue.</summary>
    public static int Count(int length, int block) => (int)((length + (long)block - 1) / block);

    /// <summary>Number of blocks in the grid.</summary>
    public long Length => (long)Batch * Heads * QueryBlocks * KeyBlocks;

    /// <summary>Index of the first block of a query block's row (its key block 0).</summary>
    public long Row(int batch, int head, int queryBlock) =>
        ((long)(Batch == 1 ? 0 : batch) * Heads + (Heads == 1 ? 0 : head)) * QueryBlocks + queryBlock;

    /// <summary>Index of one block.</summary>
    public long Index(int batch, int head, int queryBlock, int keyBlock) => Row(batch, head, queryBlock) * KeyBlocks + keyBlock;

    /// <summary>Index of the block holding the pair (query, key).</summary>
    public long IndexOfPair(int batch, int head, int query, int key) => Index(batch, head, query / QueryBlock, key / KeyBlock);
}
