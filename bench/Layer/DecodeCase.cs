using System.Text.RegularExpressions;

namespace AttentionEngine.Bench.Layer;

/// <summary>One decode step to time: "B1 E1024 H16 KV4 L4096": batch rows of one new token each over L cached tokens.</summary>
internal sealed partial record DecodeCase(int Batch, int EmbedDim, int Heads, int KvHeads, int Cached)
{
    public int HeadDim => EmbedDim / Heads;

    public string Name => $"B{Batch} E{EmbedDim} H{Heads} KV{KvHeads} L{Cached}";

    /// <summary>Bytes of cached keys and values one step reads.</summary>
    public double CacheBytes(int elementSize) => 2.0 * Batch * KvHeads * HeadDim * Cached * elementSize;

    public static IReadOnlyList<DecodeCase> ParseList(string text) =>
        text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToList();

    public static DecodeCase Parse(string text)
    {
        var match = Pattern().Match(text.Trim());
        if (!match.Success) throw new FormatException($"'{text}' is not a decode case: write e.g. 'B1 E1024 H16 KV4 L4096'.");
        int e = int.Parse(match.Groups["e"].Value), h = int.Parse(match.Groups["h"].Value), kv = int.Parse(match.Groups["kv"].Value);
        if (h < 1 || e % h != 0 || kv < 1 || h % kv != 0) throw new FormatException($"'{text}': H must divide E and KV must divide H.");
        return new DecodeCase(int.Parse(match.Groups["b"].Value), e, h, kv, int.Parse(match.Groups["l"].Value));
    }

    [GeneratedRegex(@"^B(?<b>\d+)\s+E(?<e>\d+)\s+H(?<h>\d+)\s+KV(?<kv>\d+)\s+L(?<l>\d+)$")]
    private static partial Regex Pattern();
}
