namespace AttentionEngine.Kernels.Cpu.Backward;

/// <summary>
/// When the saved LSE can normalise the backward's P = e^(s − LSE). LSE = m + ln l is one float: at |LSE| ≥ 1024 its
/// spacing (2^-13) starts to swallow ln l, and at the magnitudes of a finite padding bias (−1e30, float.MinValue on
/// every key of a row) it is exactly m, so every recomputed P would be 1 instead of 1 / Lk. Such rows get their max and
/// sum recomputed from the scores instead (hostile or padding rows only: ordinary logits stay far below).
/// </summary>
internal static class LsePrecision
{
    public const float CoarseMagnitude = 1024;

    public static bool IsCoarse(float lse) => float.IsFinite(lse) && Math.Abs(lse) >= CoarseMagnitude;
}
