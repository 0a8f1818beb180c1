namespace AttentionEngine.Bench.Performance;

/// <summary>One timed problem. Decode cases are judged by bytes of K and V streamed, the rest by FLOPs.</summary>
internal sealed record PerformanceCase(string Name, int Batch, int Heads, int QueryLength, int KeyLength, int HeadDim, bool Causal, bool Decode)
{
    /// <summary>The preset: the CPU kernel's performance goals.</summary>
    public static IReadOnlyList<PerformanceCase> Preset { get; } =
    [
        new("B1 H8 N2048 D64", 1, 8, 2048, 2048, 64, false, false),
        new("B1 H8 N4096 D64", 1, 8, 4096, 4096, 64, false, false),
        new("B1 H8 N2048 D128", 1, 8, 2048, 2048, 128, false, false),
        new("B1 H8 N4096 D64 causal", 1, 8, 4096, 4096, 64, true, false),
        new("B4 H16 N1024 D64 causal", 4, 16, 1024, 1024, 64, true, false),
        new("decode B1 H32 Lk4096 D128", 1, 32, 1, 4096, 128, false, true),
    ];

    /// <summary>Visible (query, key) pairs per head: all, or the causal (top-left) triangle.</summary>
    public double VisiblePairs => Causal
        ? Enumerable.Range(0, QueryLength).Sum(i => (double)Math.Min(i + 1, KeyLength))
        : (double)QueryLength * KeyLength;

    /// <summary>FLOPs = 4·B·H·(visible pairs)·D.</summary>
    public double Flops => 4.0 * Batch * Heads * VisiblePairs * HeadDim;

    public double KvBytes(int elementSize) => 2.0 * Batch * Heads * KeyLength * HeadDim * elementSize;
}
