namespace AttentionEngine.Bench.Performance;

/// <summary>
/// The cases of `run --grid`: prefill at N = 64..8192 (powers of two and odd sizes), D 64 and 128, causal and not,
/// with B·H·N fixed at 65,536 tokens (H = 8, B = 8192 / N rounded, at least 1), so every point moves the same amount
/// of Q, K and V; and decode with B1 H32 Hkv8 D128 at Lk = 64..32,768.
/// </summary>
internal static class GridCases
{
    public static IReadOnlyList<int> SequenceLengths { get; } = [64, 100, 128, 256, 333, 512, 777, 1024, 1500, 2048, 4096, 8192];

    public static IReadOnlyList<int> DecodeKeyLengths { get; } = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768];

    public const int Tokens = 65536;

    public static IReadOnlyList<PerformanceCase> All()
    {
        var cases = new List<PerformanceCase>();
        foreach (int d in new[] { 64, 128 })
        foreach (bool causal in new[] { false, true })
        foreach (int n in SequenceLengths)
        {
            int batch = Math.Max(1, (int)Math.Round(Tokens / 8.0 / n));
            cases.Add(PerformanceCase.Parse($"B{batch} H8 N{n} D{d}{(causal ? " causal" : "")}"));
        }
        foreach (int lk in DecodeKeyLengths) cases.Add(PerformanceCase.Parse($"B1 H32 Hkv8 Lq1 Lk{lk} D128"));
        return cases;
    }
}
