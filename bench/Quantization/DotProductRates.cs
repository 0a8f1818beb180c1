using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Bench.Quantization;

/// <summary>
/// Which inner product is fastest on this CPU from C#, for an int8 QKᵀ: register-blocked microkernels (4 rows × 2
/// vectors of columns, operands in L1, like a GEMM's inner loop) counting multiply-accumulates per second:
/// <list type="bullet">
/// <item>fp32 FMA (vfmadd231ps): 8 MACs per instruction, the kernels' path today;</item>
/// <item>int16 pairs (vpmaddwd + vpaddd): 16 MACs per madd, int8 sign-extended to int16, exact;</item>
/// <item>u8 × s8 (vpmaddubsw, then vpmaddwd by ones and vpaddd): 32 MACs per maddubs, Q shifted to unsigned (and corrected
/// by 128 · Σk); its int16 pair sums saturate at 2 · 255 · 127 > 32767, so it is exact only for |k| ≤ 64.</item>
/// </list>
/// .NET 10 exposes no VNNI (vpdpbusd / vpdpwssd) here, so every integer path pays a separate add.
/// </summary>
internal static unsafe class DotProductRates
{
    private const int Depth = 256; // k steps per call: operands of a few KB, L1-resident

    public sealed record Rate(string Kernel, double MacsPerSecond);

    public static IReadOnlyList<Rate> Measure(int threads, double seconds)
    {
        if (!Avx2.IsSupported || !Fma.IsSupported) return [];
        return
        [
            new("fp32 FMA (vfmadd231ps)", Run(threads, seconds, Fp32, 4 * 16 * Depth)),
            new("int16 pairs (vpmaddwd + vpaddd)", Run(threads, seconds, Int16Pairs, 4 * 32 * Depth)),
            new("u8 x s8 (vpmaddubsw + vpmaddwd + vpaddd)", Run(threads, seconds, U8S8, 4 * 64 * Depth)),
        ];
    }

    /// <summary>MACs per second of <paramref name="kernel"/> (one call = <paramref name="macsPerCall"/>) on each of <paramref name="threads"/> threads, summed.</summary>
    private static double Run(int threads, double seconds, Func<int, long> kernel, long macsPerCall)
    {
        var totals = new long[threads];
        var stopwatch = Stopwatch.StartNew();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            long calls = 0, sink = 0;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalSeconds < seconds)
            {
                sink += kernel(1000);
                calls += 1000;
            }
            totals[t] = calls;
            GC.KeepAlive(sink);
        });
        double elapsed = stopwatch.Elapsed.TotalSeconds;
        return totals.Sum() * (double)macsPerCall / elapsed;
    }

    private static readonly float[] A32 = Filled<float>(4 * Depth, n => (n % 7) * 0.01f), B32 = Filled<float>(16 * Depth, n => (n % 5) * 0.02f);
    private static readonly short[] A16 = Filled<short>(4 * 2 * Depth, n => (short)(n % 11 - 5)), B16 = Filled<short>(32 * Depth, n => (short)(n % 13 - 6));
    private static readonly sbyte[] B8 = Filled<sbyte>(64 * Depth, n => (sbyte)(n % 17 - 8));
    private static readonly byte[] A8 = Filled<byte>(4 * 4 * Depth, n => (byte)(n % 19));

    private static T[] Filled<T>(int count, Func<int, T> value) => Enumerable.Range(0, count).Select(value).ToArray();

    private static long Fp32(int repeats)
    {
        fixed (float* a = A32)
        fixed (float* b = B32)
        {
            var acc = Vector256<float>.Zero;
            for (int n = 0; n < repeats; n++)
            {
                Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
                for (int k = 0; k < Depth; k++)
                {
                    var b0 = Avx.LoadVector256(b + k * 16);
                    var b1 = Avx.LoadVector256(b + k * 16 + 8);
                    var a0 = Vector256.Create(a[k * 4]);
                    c00 = Fma.MultiplyAdd(a0, b0, c00); c01 = Fma.MultiplyAdd(a0, b1, c01);
                    var a1 = Vector256.Create(a[k * 4 + 1]);
                    c10 = Fma.MultiplyAdd(a1, b0, c10); c11 = Fma.MultiplyAdd(a1, b1, c11);
                    var a2 = Vector256.Create(a[k * 4 + 2]);
                    c20 = Fma.MultiplyAdd(a2, b0, c20); c21 = Fma.MultiplyAdd(a2, b1, c21);
                    var a3 = Vector256.Create(a[k * 4 + 3]);
                    c30 = Fma.MultiplyAdd(a3, b0, c30); c31 = Fma.MultiplyAdd(a3, b1, c31);
                }
                acc += c00 + c01 + c10 + c11 + c20 + c21 + c30 + c31;
            }
            return (long)acc.GetElement(0);
        }
    }

    private static long Int16Pairs(int repeats)
    {
        fixed (short* a = A16)
        fixed (short* b = B16)
        {
            var acc = Vector256<int>.Zero;
            for (int n = 0; n < repeats; n++)
            {
                Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
                for (int k = 0; k < Depth; k++) // each step: a pair of k for every row, 2 vectors of 8 columns x 2 k
                {
                    var b0 = Avx.LoadVector256(b + k * 32);
                    var b1 = Avx.LoadVector256(b + k * 32 + 16);
                    int* pairs = (int*)(a + k * 8);
                    var a0 = Vector256.Create(pairs[0]).AsInt16();
                    c00 = Avx2.Add(c00, Avx2.MultiplyAddAdjacent(a0, b0)); c01 = Avx2.Add(c01, Avx2.MultiplyAddAdjacent(a0, b1));
                    var a1 = Vector256.Create(pairs[1]).AsInt16();
                    c10 = Avx2.Add(c10, Avx2.MultiplyAddAdjacent(a1, b0)); c11 = Avx2.Add(c11, Avx2.MultiplyAddAdjacent(a1, b1));
                    var a2 = Vector256.Create(pairs[2]).AsInt16();
                    c20 = Avx2.Add(c20, Avx2.MultiplyAddAdjacent(a2, b0)); c21 = Avx2.Add(c21, Avx2.MultiplyAddAdjacent(a2, b1));
                    var a3 = Vector256.Create(pairs[3]).AsInt16();
                    c30 = Avx2.Add(c30, Avx2.MultiplyAddAdjacent(a3, b0)); c31 = Avx2.Add(c31, Avx2.MultiplyAddAdjacent(a3, b1));
                }
                acc += c00 + c01 + c10 + c11 + c20 + c21 + c30 + c31;
            }
            return acc.GetElement(0);
        }
    }

    private static long U8S8(int repeats)
    {
        fixed (byte* a = A8)
        fixed (sbyte* b = B8)
        {
            var ones = Vector256.Create((short)1);
            var acc = Vector256<int>.Zero;
            for (int n = 0; n < repeats; n++)
            {
                Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
                for (int k = 0; k < Depth; k++) // each step: 4 k for every row, 2 vectors of 8 columns x 4 k
                {
                    var b0 = Avx.LoadVector256(b + k * 64);
                    var b1 = Avx.LoadVector256(b + k * 64 + 32);
                    int* quads = (int*)(a + k * 16);
                    var a0 = Vector256.Create(quads[0]).AsByte();
                    c00 = Avx2.Add(c00, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a0, b0), ones));
                    c01 = Avx2.Add(c01, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a0, b1), ones));
                    var a1 = Vector256.Create(quads[1]).AsByte();
                    c10 = Avx2.Add(c10, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a1, b0), ones));
                    c11 = Avx2.Add(c11, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a1, b1), ones));
                    var a2 = Vector256.Create(quads[2]).AsByte();
                    c20 = Avx2.Add(c20, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a2, b0), ones));
                    c21 = Avx2.Add(c21, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a2, b1), ones));
                    var a3 = Vector256.Create(quads[3]).AsByte();
                    c30 = Avx2.Add(c30, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a3, b0), ones));
                    c31 = Avx2.Add(c31, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a3, b1), ones));
                }
                acc += c00 + c01 + c10 + c11 + c20 + c21 + c30 + c31;
            }
            return acc.GetElement(0);
        }
    }
}
