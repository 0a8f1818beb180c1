namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// How the decode kernel cuts each (batch, KV head)'s keys into independent splits (flash-decoding), so that a
/// handful of heads still keeps every core busy. The cut depends on the key length alone: never on the thread count
/// (partials and their merge order are the same for 1 or N threads, and so is every bit), and not on how query heads
/// group onto KV heads (grouped-query attention equals the same heads repeated, bitwise).
/// </summary>
internal readonly struct DecodeSplits
{
    /// <summary>Long enough that a split's fixed costs (queries, merge) vanish next to streaming its K and V.</summary>
    public const int DefaultKeysPerSplit = 1024;

    public DecodeSplits(int keyLength, int keyBlock, bool single)
    {
        long perSplit = single ? Math.Max(1, keyLength) : DefaultKeysPerSplit;
        KeysPerSplit = (perSplit + keyBlock - 1) / keyBlock * keyBlock; // long: a single split may pass int.MaxValue when rounded
        Count = Math.Max(1, (int)((keyLength + KeysPerSplit - 1) / KeysPerSplit));
    }

    public long KeysPerSplit { get; }
    public int Count { get; }
}
