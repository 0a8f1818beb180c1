using System.Globalization;

namespace AttentionEngine.Bench.Gemm;

/// <summary>
/// One product to time: M x N x K, with B either row-major [K, N] or an nn.Linear weight [N, K] read transposed
/// ("linear", the projection layout). Written "2048x2048x2048" or "2048x1024x1024 linear".
/// </summary>
internal sealed record GemmCase(int M, int N, int K, bool Linear)
{
    public double Flops => 2.0 * M * N * K;

    public string Name => $"{M}x{N}x{K}{(Linear ? " linear" : "")}";

    public static IReadOnlyList<GemmCase> ParseList(string text) =>
        text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToList();

    public static GemmCase Parse(string text)
    {
        var words = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var sizes = words.Length is 1 or 2 ? words[0].Split('x') : [];
        if (sizes.Length != 3 || words.Length == 2 && words[1] != "linear"
            || !sizes.All(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0))
            throw new FormatException($"'{text}' is not a product: write MxNxK, optionally followed by 'linear' (B as an [N, K] weight).");
        var v = sizes.Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        return new GemmCase(v[0], v[1], v[2], words.Length == 2);
    }
}
