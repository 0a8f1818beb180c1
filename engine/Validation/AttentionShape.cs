namespace AttentionEngine;

/// <summary>
/// The sizes of one attention problem. Q is [Batch, QueryHeads, QueryLength, HeadDim], K is
/// [Batch, KvHeads, KeyLength, HeadDim], V is [Batch, KvHeads, KeyLength, ValueDim], the output is
/// [Batch, QueryHeads, QueryLength, ValueDim]. Query head h reads KV head h / GroupSize (GQA/MQA).
/// </summary>
public readonly record struct AttentionShape(
    int Batch, int QueryHeads, int KvHeads, int QueryLength, int KeyLength, int HeadDim, int ValueDim)
{
    /// <summary>Query heads per KV head.</summary>
    public int GroupSize => QueryHeads / KvHeads;

    /// <summary>
    /// Forward FLOPs counting the given number of visible (query, key) pairs per (batch, head):
    /// 2·D for Q·K plus 2·Dv for P·V per pair (= 4·B·H·Lq·Lk·D when Dv = D and nothing is masked).
    /// </summary>
    public double ForwardFlops(double visiblePairsPerHead) =>
        (double)Batch * QueryHeads * visiblePairsPerHead * (2.0 * HeadDim + 2.0 * ValueDim);

    /// <summary>Forward FLOPs with every pair visible.</summary>
    public double DenseForwardFlops => ForwardFlops((double)QueryLength * KeyLength);

    /// <inheritdoc/>
    public override string ToString() =>
        $"B{Batch} Hq{QueryHeads} Hkv{KvHeads} Lq{QueryLength} Lk{KeyLength} D{HeadDim} Dv{ValueDim}";
}
