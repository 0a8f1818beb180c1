using System.Text.RegularExpressions;

namespace AttentionEngine.Bench.Layer;

/// <summary>One layer forward to time: "B1 S2048 E1024 H16 KV4 causal" (KV and causal optional).</summary>
internal sealed partial record LayerCase(int Batch, int Length, int EmbedDim, int Heads, int KvHeads, bool Causal)
{
    public int HeadDim => EmbedDim / Heads;

    /// <summary>Projection FLOPs (Q, K, V, output) plus attention's 4·S·visible keys·D per head.</summary>
    public double Flops
    {
        get
        {
            double tokens = (double)Batch * Length, hd = Heads * HeadDim, kv = KvHeads * HeadDim;
            double projections = 2 * tokens * EmbedDim * (hd + 2 * kv) + 2 * tokens * hd * EmbedDim;
            double pairs = Causal ? Length * (Length + 1) / 2.0 : (double)Length * Length;
            return projections + 4.0 * Batch * Heads * pairs * HeadDim;
        }
    }

    /// <summary>
    /// Backward FLOPs by the usual convention (recomputation not counted): twice the projections (input and weight
    /// gradients) and 2.5 times attention (FlashAttention's backward convention).
    /// </summary>
    public double BackwardFlops
    {
        get
        {
            double attention = 4.0 * Batch * Heads * (Causal ? Length * (Length + 1) / 2.0 : (double)Length * Length) * HeadDim;
            return 2 * (Flops - attention) + 2.5 * attention;
        }
    }

    public string Name => $"B{Batch} S{Length} E{EmbedDim} H{Heads}{(KvHeads != Heads ? $" KV{KvHeads}" : "")}{(Causal ? " causal" : "")}";

    public static IReadOnlyList<LayerCase> ParseList(string text) =>
        text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToList();

    public static LayerCase Parse(string text)
    {
        var match = Pattern().Match(text.Trim());
        if (!match.Success)
            throw new FormatException($"'{text}' is not a layer case: write e.g. 'B1 S2048 E1024 H16', optionally 'KV4' and 'causal'.");
        int heads = int.Parse(match.Groups["h"].Value), kv = match.Groups["kv"].Success ? int.Parse(match.Groups["kv"].Value) : heads;
        int e = int.Parse(match.Groups["e"].Value);
        if (heads < 1 || e % heads != 0 || kv < 1 || heads % kv != 0)
            throw new FormatException($"'{text}': H must divide E and KV must divide H.");
        return new LayerCase(int.Parse(match.Groups["b"].Value), int.Parse(match.Groups["s"].Value), e, heads, kv, match.Groups["causal"].Success);
    }

    [GeneratedRegex(@"^B(?<b>\d+)\s+S(?<s>\d+)\s+E(?<e>\d+)\s+H(?<h>\d+)(\s+KV(?<kv>\d+))?(\s+(?<causal>causal))?$")]
    private static partial Regex Pattern();
}
