using System.Diagnostics;

namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// Bounded busy-waiting for the worker pool, before it falls back to blocking. A blocked thread is woken 10-20
/// microseconds after its signal on a 2-core VM; the calls of a serving loop are often shorter than that.
/// </summary>
internal static class PoolSpin
{
    /// <summary>How long a caller, done with its tasks, spins for helpers finishing theirs (50 microseconds).</summary>
    public static readonly long CallerTicks = Stopwatch.Frequency / 20_000;

    /// <summary>How long an idle worker spins for the next call's ticket before it sleeps (50 microseconds).</summary>
    public static readonly long WorkerTicks = Stopwatch.Frequency / 20_000;

    /// <summary>The timestamp at which a spin of <paramref name="ticks"/> gives up.</summary>
    public static long Deadline(long ticks) => Stopwatch.GetTimestamp() + ticks;

    /// <summary>
    /// One pause of a spin loop; false once <paramref name="deadline"/> has passed. Loops call it inline rather than
    /// take a condition delegate: a lambda's cached delegate is created on the first thread that runs it, an allocation
    /// that could land in any call.
    /// </summary>
    public static bool Pause(long deadline)
    {
        Thread.SpinWait(8);
        return Stopwatch.GetTimestamp() <= deadline;
    }
}
