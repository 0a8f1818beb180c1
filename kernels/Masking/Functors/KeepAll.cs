namespace AttentionEngine;

/// <summary>Keeps every pair (the mask of a call that only has a score functor).</summary>
public readonly struct KeepAll : IBlockClassifiedMask
{
    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) => true;
    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1) => BlockKind.Full;
}
