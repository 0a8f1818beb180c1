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

    /// <summary>
    /// Several calls timed in turn (one run of each per round, after each one's warm-up) so that the machine's drift
    /// falls on all of them alike: the medians of the same rounds, for before/after comparisons in one run.
    /// </summary>
    public static double[] MedianSecondsInterleaved(IReadOnlyList<Action> calls, double minimumSeconds)
    {
        foreach (var call in calls)
        {
            var warmUp = Stopwatch.StartNew();
            for (int n = 0; n < 2 || warmUp.Elapsed.TotalSeconds < 0.5; n++) call();
        }
        var times = calls.Select(_ => new List<double>()).ToArray();
        var total = Stopwatch.StartNew();
        while (total.Elapsed.TotalSeconds < minimumSeconds * calls.Count || times[0].Count < 3)
            for (int n = 0; n < calls.Count; n++)
            {
                long start = Stopwatch.GetTimestamp();
                calls[n]();
                times[n].Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
        return times.Select(t => t.Order().ElementAt(t.Count / 2)).ToArray();
    }
}
