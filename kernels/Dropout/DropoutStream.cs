namespace AttentionEngine.Kernels.Dropout;

/// <summary>
/// The keep decision of every (batch, head, query, key) of one call with dropout, as a pure function of
/// (seed, offset, b, h, i, j): one Philox4x32-10 call per four consecutive keys, word t deciding key 4g + t. The
/// counter is (j / 4, i, b · queryHeads + h, low half of the offset); the key is the seed with the offset's high half
/// xored into its high word. Within a call every (b, h, i, j) has its own counter (the validator keeps b · H · Lq
/// within int), and for one seed every offset in the 64-bit range gives another stream, so a training loop advances
/// the offset per step. A key is kept when its word is at least <see cref="Threshold"/> = ⌊p · 2^32⌋, so the keep rate
/// is 1 − p to within 2^-32; kept probabilities are multiplied by <see cref="Scale"/> = 1 / (1 − p), rounded to float.
/// Nothing here depends on tiling, threads, vector width or backend: every kernel draws these same bits.
/// </summary>
internal readonly struct DropoutStream
{
    public DropoutStream(double probability, ulong seed, ulong offset)
    {
        IsActive = probability > 0;
        Threshold = (uint)Math.Floor(probability * 4294967296.0);
        Scale = (float)(1.0 / (1.0 - probability));
        Key0 = (uint)seed;
        Key1 = (uint)(seed >> 32) ^ (uint)(offset >> 32);
        Offset = (uint)offset;
    }

    /// <summary>False for p = 0: the call takes the no-dropout path, bit for bit.</summary>
    public bool IsActive { get; }
    public uint Threshold { get; }
    public float Scale { get; }
    public uint Key0 { get; }
    public uint Key1 { get; }
    /// <summary>The counter's last word: the low half of the call's offset.</summary>
    public uint Offset { get; }

    /// <summary>The stream's row index of (batch, head): the counter's third word.</summary>
    public static uint RowStream(int batch, int queryHeads, int head) => unchecked((uint)batch * (uint)queryHeads + (uint)head);

    /// <summary>Whether key <paramref name="key"/> of query <paramref name="query"/> in row stream <paramref name="rowStream"/> is kept.</summary>
    public bool Keeps(uint rowStream, int query, int key)
    {
        if (!IsActive) return true;
        return Philox4x32.Word((uint)key >> 2, (uint)query, rowStream, Offset, Key0, Key1, key & 3) >= Threshold;
    }

    /// <summary>The factor of a probability: <see cref="Scale"/> when kept, 0 when dropped (1 without dropout).</summary>
    public float Multiplier(uint rowStream, int query, int key) => !IsActive ? 1f : Keeps(rowStream, query, key) ? Scale : 0f;
}
