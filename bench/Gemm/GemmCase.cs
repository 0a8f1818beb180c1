using System.Globalization;

namespace AttentionEngine.Bench.Gemm;

/// <summary>
/// One product to time: M x N x K, with B either row-major [K, N] or an nn.Linear weight [N, K] read transposed
/// ("linear", the projection layout), and A either row-major [M, K] or stored [K, M] and read transposed ("gradient",
/// a weight gradient's dPᵀ · X). Written "2048x2048x2048", "2048x1024x1024 linear" or "1024x1024x2048 gradient".
/// </summary>
internal sealed record GemmCase(int M, int N, int K, bool Linear, bool TransposedA = false)
{
    public double Flops => 2.0 * M * N * K;

    public string Name => $"{M}x{N}x{K}{(Linear ? " linear" : "")}{(TransposedA ? " gradient" : "")}";

    public static IReadOnlyList<GemmCase> ParseList(string text) =>
        text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToList();

    public static GemmCase Parse(string text)
    {
        var words = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var sizes = words.Length >= 1 ? words[0].Split('x') : [];
        var layouts = words.Skip(1).ToList();
        if (sizes.Length != 3 || layouts.Any(w => w is not ("linear" or "gradient")) || layouts.Distinct().Count() != layouts.Count
            || !sizes.All(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0))
            throw new FormatException($"'{text}' is not a product: write MxNxK, optionally followed by 'linear' (B as an [N, K] weight) "
                + "and/or 'gradient' (A stored as [K, M]).");
        var v = sizes.Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        return new GemmCase(v[0], v[1], v[2], layouts.Contains("linear"), layouts.Contains("gradient"));
    }
}
