namespace AttentionEngine;

/// <summary>
/// A mask written as code (FlexAttention's mask_mod): <see cref="Keep"/> is true when the query of (batch, head) may
/// see the key. Implement it on a struct and
/// pass the struct as a generic type argument: the JIT compiles one specialised kernel per mask and inlines the call.
/// It must be a pure function of its arguments and the struct's fields (it is evaluated in any order, on any thread).
/// </summary>
public interface IMaskMod
{
    /// <summary>True when <paramref name="query"/> of (<paramref name="batch"/>, <paramref name="head"/>) may see
    /// <paramref name="key"/>; positions are absolute indices into the call's query and key lengths.</summary>
    bool Keep(int batch, int head, int query, int key);
}

/// <summary>
/// A mask that can also say, by arithmetic, whether a whole rectangle of (query, key) pairs is all visible, all hidden
/// or mixed, so a <c>BlockMask</c> is built from it without evaluating every pair.
/// </summary>
public interface IBlockClassifiedMask : IMaskMod
{
    /// <summary>Classifies queries [q0, q1) × keys [k0, k1) of (batch, head); ranges are non-empty.</summary>
    BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1);
}

/// <summary>What a block of a <c>BlockMask</c> holds.</summary>
public enum BlockKind : byte
{
    /// <summary>No visible pair: the kernels never touch the block.</summary>
    Empty = 0,
    /// <summary>Some visible pairs: the kernels evaluate the mask functor on every pair.</summary>
    Partial = 1,
    /// <summary>Every pair visible: the kernels run the block with no mask arithmetic.</summary>
    Full = 2,
}
