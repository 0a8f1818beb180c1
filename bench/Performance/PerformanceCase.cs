using System.Globalization;

namespace AttentionEngine.Bench.Performance;

/// <summary>
/// One timed problem. Cases with at most 8 queries (decoding) are judged by bytes of K and V streamed, the rest by
/// FLOPs = 4·B·H·(visible pairs)·D.
/// </summary>
internal sealed record PerformanceCase(string Name, int Batch, int Heads, int KvHeads, int QueryLength, int KeyLength, int HeadDim, bool Causal)
{
    /// <summary>The issue's preset: the CPU kernel's performance goals.</summary>
    public static IReadOnlyList<PerformanceCase> Preset { get; } =
    [
        Parse("B1 H8 N2048 D64"),
        Parse("B1 H8 N4096 D64"),
        Parse("B1 H8 N2048 D128"),
        Parse("B1 H8 N4096 D64 causal"),
        Parse("B4 H16 N1024 D64 causal"),
        Parse("B1 H32 Lq1 Lk4096 D128"),
    ];

    public bool Decode => QueryLength <= 8;

    /// <summary>Visible (query, key) pairs per head: all, or the causal (top-left) triangle.</summary>
    public double VisiblePairs => Causal
        ? Enumerable.Range(0, QueryLength).Sum(i => (double)Math.Min(i + 1, KeyLength))
        : (double)QueryLength * KeyLength;

    /// <summary>FLOPs = 4·B·H·(visible pairs)·D.</summary>
    public double Flops => 4.0 * Batch * Heads * VisiblePairs * HeadDim;

    public double KvBytes(int elementSize) => 2.0 * Batch * KvHeads * KeyLength * HeadDim * elementSize;

    /// <summary>
    /// Reads a case such as "B1 H32 Hkv8 Lq1 Lk4096 D128" or "B4 H16 N1024 D64 causal": B batch (default 1), H query
    /// heads (default 8), Hkv KV heads (default H), N both lengths or Lq and Lk, D head dimension (default 64),
    /// "causal" for a top-left causal mask.
    /// </summary>
    public static PerformanceCase Parse(string text)
    {
        int batch = 1, heads = 8, d = 64;
        int? kvHeads = null, lq = null, lk = null;
        bool causal = false;
        foreach (var token in text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (token.Equals("causal", StringComparison.OrdinalIgnoreCase)) { causal = true; continue; }
            int split = token.TakeWhile(char.IsLetter).Count();
            string key = token[..split].ToUpperInvariant();
            if (!int.TryParse(token[split..], NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value < 1)
                throw new FormatException($"Shape '{text}': '{token}' needs a positive whole number after '{token[..split]}'.");
            switch (key)
            {
                case "B": batch = value; break;
                case "H": heads = value; break;
                case "HKV": kvHeads = value; break;
                case "N": lq = lk = value; break;
                case "LQ": lq = value; break;
                case "LK": lk = value; break;
                case "D": d = value; break;
                default: throw new FormatException($"Shape '{text}': unknown part '{token}'; expected B, H, Hkv, N, Lq, Lk, D or causal.");
            }
        }
        if (lq is null || lk is null) throw new FormatException($"Shape '{text}': give N (both lengths) or both Lq and Lk.");
        int kv = kvHeads ?? heads;
        if (heads % kv != 0) throw new FormatException($"Shape '{text}': H = {heads} is not a multiple of Hkv = {kv}.");
        string name = $"B{batch} H{heads}{(kv != heads ? $" Hkv{kv}" : "")} " +
                      (lq == lk ? $"N{lq}" : $"Lq{lq} Lk{lk}") + $" D{d}{(causal ? " causal" : "")}";
        return new PerformanceCase(name, batch, heads, kv, lq.Value, lk.Value, d, causal);
    }

    /// <summary>"preset", or cases separated by ';'.</summary>
    public static IReadOnlyList<PerformanceCase> ParseList(string shapes) =>
        shapes.Equals("preset", StringComparison.OrdinalIgnoreCase)
            ? Preset
            : shapes.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToArray();
}
