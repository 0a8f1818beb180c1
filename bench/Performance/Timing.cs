using System.Diagnostics;

namespace AttentionEngine.Bench.Performance;

/// <summary>
/// The one timing loop of `run` and `peers`: half a second of warm-up (the JIT's tiered compilation replaces
/// first-call code only after about 30 calls and a short delay), then repeats for at least the given time; the median.
/// </summary>
internal static class Timing
{
    public static double MedianSeconds(Action call, double minimumSeconds)
    {
        var warmUp = Stopwatch.StartNew();
        for (int n = 0; n < 2 || warmUp.Elapsed.TotalSeconds < 0.5; n++) call();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (total.Elapsed.TotalSeconds < minimumSeconds || times.Count < 3)
        {
            long start = Stopwatch.GetTimestamp();
            call();
            times.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }
}
