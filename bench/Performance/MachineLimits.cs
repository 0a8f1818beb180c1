using System.Diagnostics;
using System.Runtime.Intrinsics;

namespace AttentionEngine.Bench.Performance;

/// <summary>
/// The machine's own limits, measured rather than assumed: fp32 FMA peak (12 independent accumulator chains per
/// thread at the widest native width, as Zen needs to fill both FMA pipes at 4-cycle latency) and memory bandwidth (large copy).
/// </summary>
internal sealed record MachineLimits(double PeakGflops, double BandwidthGBs, int Threads)
{
    public static MachineLimits Measure(int threads)
    {
        Probe(1, 2_000_000); // warm up the JIT
        double peak = 0;
        for (int trial = 0; trial < 3; trial++)
        {
            long iterations = 20_000_000;
            var watch = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => Probe(1, iterations));
            double seconds = watch.Elapsed.TotalSeconds;
            peak = Math.Max(peak, threads * iterations * (double)FlopsPerIteration / seconds / 1e9);
        }
        return new MachineLimits(peak, MeasureBandwidth(threads), threads);
    }

    /// <summary>12 independent FMA chains at the widest natively accelerated width, so they fit the register file.</summary>
    private static float Probe(float seed, long iterations) =>
        Vector512.IsHardwareAccelerated ? Probe512(seed, iterations) : Probe256(seed, iterations);

    /// <summary>FLOPs one probe iteration performs: 12 FMAs of the native width, 2 operations per lane.</summary>
    private static int FlopsPerIteration => 12 * 2 * (Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector256<float>.Count);

    private static float Probe512(float seed, long iterations)
    {
        var m = Vector512.Create(0.999999f);
        var a = Vector512.Create(1e-3f);
        Vector512<float> c0 = Vector512.Create(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long n = 0; n < iterations; n++)
        {
            c0 = Vector512.FusedMultiplyAdd(c0, m, a); c1 = Vector512.FusedMultiplyAdd(c1, m, a);
            c2 = Vector512.FusedMultiplyAdd(c2, m, a); c3 = Vector512.FusedMultiplyAdd(c3, m, a);
            c4 = Vector512.FusedMultiplyAdd(c4, m, a); c5 = Vector512.FusedMultiplyAdd(c5, m, a);
            c6 = Vector512.FusedMultiplyAdd(c6, m, a); c7 = Vector512.FusedMultiplyAdd(c7, m, a);
            c8 = Vector512.FusedMultiplyAdd(c8, m, a); c9 = Vector512.FusedMultiplyAdd(c9, m, a);
            c10 = Vector512.FusedMultiplyAdd(c10, m, a); c11 = Vector512.FusedMultiplyAdd(c11, m, a);
        }
        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    // Vector512 on an AVX2 machine is two 256-bit halves: 24 chains and two constants would not fit 16 registers, and
    // the spills made this probe report about 40% of the real peak. 12 chains of 256 bits fit (14 registers).
    private static float Probe256(float seed, long iterations)
    {
        var m = Vector256.Create(0.999999f);
        var a = Vector256.Create(1e-3f);
        Vector256<float> c0 = Vector256.Create(seed), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long n = 0; n < iterations; n++)
        {
            c0 = Vector256.FusedMultiplyAdd(c0, m, a); c1 = Vector256.FusedMultiplyAdd(c1, m, a);
            c2 = Vector256.FusedMultiplyAdd(c2, m, a); c3 = Vector256.FusedMultiplyAdd(c3, m, a);
            c4 = Vector256.FusedMultiplyAdd(c4, m, a); c5 = Vector256.FusedMultiplyAdd(c5, m, a);
            c6 = Vector256.FusedMultiplyAdd(c6, m, a); c7 = Vector256.FusedMultiplyAdd(c7, m, a);
            c8 = Vector256.FusedMultiplyAdd(c8, m, a); c9 = Vector256.FusedMultiplyAdd(c9, m, a);
            c10 = Vector256.FusedMultiplyAdd(c10, m, a); c11 = Vector256.FusedMultiplyAdd(c11, m, a);
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    private static double MeasureBandwidth(int threads)
    {
        const int length = 32 << 20; // 128 MiB of floats per array: far beyond the caches
        var source = new float[length];
        var destination = new float[length];
        source.AsSpan().Fill(1);
        double best = 0;
        for (int trial = 0; trial < 4; trial++)
        {
            var watch = Stopwatch.StartNew();
            int chunk = length / threads;
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads },
                t => source.AsSpan(t * chunk, chunk).CopyTo(destination.AsSpan(t * chunk, chunk)));
            best = Math.Max(best, 2.0 * length * sizeof(float) / watch.Elapsed.TotalSeconds / 1e9); // read + write
        }
        return best;
    }
}
