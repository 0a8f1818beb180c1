namespace AttentionEngine;

/// <summary>
/// Which (query block, key block) tiles of attention a mask leaves empty, full or partial, per (batch|1, head|1)
/// (FlexAttention's BlockMask). Kernels never touch empty blocks, run full blocks with no mask arithmetic and
/// evaluate <see cref="Mask"/> on every pair of a partial block. Its memory is one byte per block, never Lq × Lk.
/// Build it with <see cref="BlockMask.Create{TMask}"/> or <see cref="BlockMask.FromLayout{TMask}"/>.
/// </summary>
public sealed class BlockMask<TMask> where TMask : struct, IMaskMod
{
    private readonly BlockKind[] _kinds; // [batch][heads][queryBlocks][keyBlocks]

    internal BlockMask(TMask mask, int batch, int heads, int queryLength, int keyLength, int queryBlock, int keyBlock, BlockKind[] kinds)
    {
        Mask = mask;
        Batch = batch; Heads = heads; QueryLength = queryLength; KeyLength = keyLength;
        QueryBlock = queryBlock; KeyBlock = keyBlock;
        Grid = new BlockGrid(batch, heads, queryLength, keyLength, queryBlock, keyBlock);
        _kinds = kinds;
    }

    /// <summary>The functor evaluated on the pairs of partial blocks.</summary>
    public TMask Mask { get; }

    /// <summary>Batch size, or 1 when the mask is the same for every batch.</summary>
    public int Batch { get; }

    /// <summary>Query heads, or 1 when the mask is the same for every head.</summary>
    public int Heads { get; }

    /// <summary>Query length Lq the mask was built for.</summary>
    public int QueryLength { get; }
    /// <summary>Key length Lk the mask was built for.</summary>
    public int KeyLength { get; }
    /// <summary>Query rows per block.</summary>
    public int QueryBlock { get; }
    /// <summary>Keys per block.</summary>
    public int KeyBlock { get; }
    /// <summary>Number of query blocks, ⌈Lq / QueryBlock⌉.</summary>
    public int QueryBlocks => Grid.QueryBlocks;
    /// <summary>Number of key blocks, ⌈Lk / KeyBlock⌉.</summary>
    public int KeyBlocks => Grid.KeyBlocks;

    /// <summary>The layout of <see cref="Kinds"/>, which the kernels index with.</summary>
    internal BlockGrid Grid { get; }

    /// <summary>The kind of a block; batch and head are clamped to 0 where the mask broadcasts over them.</summary>
    public BlockKind this[int batch, int head, int queryBlock, int keyBlock] => _kinds[Index(batch, head, queryBlock, keyBlock)];

    internal int Index(int batch, int head, int queryBlock, int keyBlock) => (int)Grid.Index(batch, head, queryBlock, keyBlock);

    internal BlockKind[] Kinds => _kinds;

    /// <summary>Fraction of blocks that are not empty (what a kernel computes, relative to dense attention).</summary>
    public double Density => _kinds.Count(k => k != BlockKind.Empty) / (double)_kinds.Length;

    /// <summary>
    /// FlexAttention's index form for one kind (<see cref="BlockKind.Partial"/>: kv_num_blocks / kv_indices;
    /// <see cref="BlockKind.Full"/>: full_kv_num_blocks / full_kv_indices): per (batch, head, query block) the count of
    /// such key blocks, and their indices in ascending order, padded with −1 to <see cref="KeyBlocks"/> per row.
    /// </summary>
    public (int[] Counts, int[] Indices) IndicesOf(BlockKind kind)
    {
        int rows = _kinds.Length / KeyBlocks;
        var counts = new int[rows];
        var indices = new int[_kinds.Length];
        Array.Fill(indices, -1);
        for (int row = 0; row < rows; row++)
        {
            int n = 0;
            for (int kb = 0; kb < KeyBlocks; kb++)
                if (_kinds[row * KeyBlocks + kb] == kind) indices[row * KeyBlocks + n++] = kb;
            counts[row] = n;
        }
        return (counts, indices);
    }

    /// <summary>
    /// The block pattern of one (batch, head), a row per query block and a column per key block: '#' full, '+' partial,
    /// '.' empty (batch and head clamp to 0 where the mask broadcasts, as in the indexer).
    /// </summary>
    public string Draw(int batch = 0, int head = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(head);
        var text = new System.Text.StringBuilder(QueryBlocks * (KeyBlocks + 1));
        for (int qb = 0; qb < QueryBlocks; qb++)
        {
            for (int kb = 0; kb < KeyBlocks; kb++)
                text.Append(this[batch, head, qb, kb] switch { BlockKind.Full => '#', BlockKind.Partial => '+', _ => '.' });
            text.Append('\n');
        }
        return text.ToString();
    }

    /// <summary>The sizes and density, then the block pattern of batch 0, head 0 when it is at most 64 blocks each way.</summary>
    public override string ToString()
    {
        string summary = $"BlockMask<{typeof(TMask).Name}>[{Batch}, {Heads}, {QueryBlocks}x{QueryBlock}, {KeyBlocks}x{KeyBlock}] density {Density:P1}";
        return QueryBlocks <= 64 && KeyBlocks <= 64
            ? $"{summary} ('#' full, '+' partial, '.' empty)\n{Draw()}"
            : $"{summary} ({QueryBlocks}x{KeyBlocks} blocks: Draw(batch, head) for the pattern)";
    }
}
