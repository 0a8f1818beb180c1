using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// The register tile of the packed GEMM: 6 rows of A times two vectors of B's columns (6 x 16 at 256-bit vectors, the
/// BLIS Haswell shape). Per step of K it loads two B vectors and broadcasts six A values into twelve independent FMA
/// chains, enough to keep both FMA pipes busy through their latency, in 15 of the 16 AVX2 registers.
/// <para>Every element is one FMA chain over the panel's K, started at zero; the sum then goes to memory as
/// C + chain (a later K slice), or chain + bias (the first), the same two roundings wherever the tile falls.</para>
/// </summary>
internal static unsafe class GemmMicroKernel<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    public const int Rows = 6;

    public static int Columns => 2 * TOps.Count;

    /// <summary>
    /// One full tile: <paramref name="a"/> is a packed A panel ([kc][6]), <paramref name="b"/> a packed B panel
    /// ([kc][Columns]); the tile goes to <paramref name="c"/> (rows <paramref name="ldc"/> floats apart), added to what
    /// is there when <paramref name="accumulate"/>, else plus <paramref name="bias"/> (Columns floats) when not null.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(float* a, float* b, int kc, float* c, nint ldc, bool accumulate, float* bias)
    {
        int w = TOps.Count;
        PrefetchTile(c, ldc);
        TVec c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero, c20 = TOps.Zero, c21 = TOps.Zero;
        TVec c30 = TOps.Zero, c31 = TOps.Zero, c40 = TOps.Zero, c41 = TOps.Zero, c50 = TOps.Zero, c51 = TOps.Zero;
        int k = 0;
        for (; k + 2 <= kc; k += 2) // two steps per trip: loop overhead is a fifth of the instructions otherwise
        {
            Step(a, b, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
            Step(a + Rows, b + 2 * w, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
            a += 2 * Rows;
            b += 4 * w;
        }
        if (k < kc)
            Step(a, b, ref c00, ref c01, ref c10, ref c11, ref c20, ref c21, ref c30, ref c31, ref c40, ref c41, ref c50, ref c51);
        TVec bias0 = bias == null ? TOps.Zero : TOps.Load(bias), bias1 = bias == null ? TOps.Zero : TOps.Load(bias + w);
        bool addBias = bias != null;
        StoreRow(c, c00, c01, accumulate, addBias, bias0, bias1);
        StoreRow(c + ldc, c10, c11, accumulate, addBias, bias0, bias1);
        StoreRow(c + 2 * ldc, c20, c21, accumulate, addBias, bias0, bias1);
        StoreRow(c + 3 * ldc, c30, c31, accumulate, addBias, bias0, bias1);
        StoreRow(c + 4 * ldc, c40, c41, accumulate, addBias, bias0, bias1);
        StoreRow(c + 5 * ldc, c50, c51, accumulate, addBias, bias0, bias1);
    }

    /// <summary>
    /// Asks for the tile's rows of C now, so they arrive while the K loop runs: C is read (or written) only after it,
    /// and a task's C block (up to MaxTaskRows x MaxTaskColumns floats) is revisited once per KC slice, long after it
    /// left L2. Without this the loads of C missed at the end of every call: a fifth of the micro-kernel's samples at
    /// 2048³ on one thread.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchTile(float* c, nint ldc)
    {
        for (int r = 0; r < Rows; r++) CacheLines.Request(c + r * ldc, Columns * sizeof(float));
    }

    /// <summary>One step of K: two B vectors, six broadcasts of A, twelve FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(float* a, float* b, ref TVec c00, ref TVec c01, ref TVec c10, ref TVec c11, ref TVec c20, ref TVec c21,
        ref TVec c30, ref TVec c31, ref TVec c40, ref TVec c41, ref TVec c50, ref TVec c51)
    {
        TVec b0 = TOps.Load(b), b1 = TOps.Load(b + TOps.Count);
        TVec x = TOps.Broadcast(a[0]);
        c00 = TOps.MultiplyAdd(x, b0, c00); c01 = TOps.MultiplyAdd(x, b1, c01);
        x = TOps.Broadcast(a[1]);
        c10 = TOps.MultiplyAdd(x, b0, c10); c11 = TOps.MultiplyAdd(x, b1, c11);
        x = TOps.Broadcast(a[2]);
        c20 = TOps.MultiplyAdd(x, b0, c20); c21 = TOps.MultiplyAdd(x, b1, c21);
        x = TOps.Broadcast(a[3]);
        c30 = TOps.MultiplyAdd(x, b0, c30); c31 = TOps.MultiplyAdd(x, b1, c31);
        x = TOps.Broadcast(a[4]);
        c40 = TOps.MultiplyAdd(x, b0, c40); c41 = TOps.MultiplyAdd(x, b1, c41);
        x = TOps.Broadcast(a[5]);
        c50 = TOps.MultiplyAdd(x, b0, c50); c51 = TOps.MultiplyAdd(x, b1, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* row, TVec sum0, TVec sum1, bool accumulate, bool addBias, TVec bias0, TVec bias1)
    {
        int w = TOps.Count;
        if (accumulate)
        {
            TOps.Store(row, TOps.Add(TOps.Load(row), sum0));
            TOps.Store(row + w, TOps.Add(TOps.Load(row + w), sum1));
        }
        else if (addBias)
        {
            TOps.Store(row, TOps.Add(sum0, bias0));
            TOps.Store(row + w, TOps.Add(sum1, bias1));
        }
        else
        {
            TOps.Store(row, sum0);
            TOps.Store(row + w, sum1);
        }
    }

    /// <summary>
    /// A tile cut by the edge of C: the full tile into <paramref name="scratch"/> (Rows x Columns floats), then its
    /// <paramref name="rows"/> x <paramref name="columns"/> corner to <paramref name="c"/> with the same two roundings
    /// as <see cref="Multiply"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MultiplyEdge(float* a, float* b, int kc, float* c, nint ldc, bool accumulate, float* bias, int rows, int columns, float* scratch)
    {
        int width = Columns;
        Multiply(a, b, kc, scratch, width, accumulate: false, bias: null);
        for (int r = 0; r < rows; r++)
        {
            float* source = scratch + r * width, destination = c + r * ldc;
            if (accumulate) for (int n = 0; n < columns; n++) destination[n] += source[n];
            else if (bias != null) for (int n = 0; n < columns; n++) destination[n] = source[n] + bias[n];
            else for (int n = 0; n < columns; n++) destination[n] = source[n];
        }
    }
}
