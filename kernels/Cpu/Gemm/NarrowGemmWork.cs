using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// Products with a few rows of A against a weight read in its [out, in] layout (B's columns contiguous along K): a
/// decode step's projections, one token per sequence. There the work is reading B once, and packing it (a transpose
/// written to L2 and read back) cost more than the arithmetic: here each element of C is a dot product over K in
/// vector lanes, four columns of B against four rows of A at a time with AVX-512's 32 registers (16 FMA chains), two
/// rows otherwise (8), B widened in the register, then the lanes summed in a fixed order and the bias added.
/// <para>The bits of an element depend only on its row of A and column of B: not on the thread count, the number of
/// rows or which other rows share the call. They differ (within rounding) from the packed kernel's, which sums in
/// another order; a product switches paths at <see cref="MaxRows"/>.</para>
/// </summary>
internal sealed unsafe class NarrowGemmWork<TA, TB, TC, TOps, TVec> : PoolWork
    where TA : unmanaged where TB : unmanaged where TC : unmanaged
    where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>
    /// Most rows of A this path takes. Since the four sums of <see cref="IVectorOps{TVec}.SumFour"/>, it beats the packed kernel up to
    /// 32 rows of fp32 or bf16 weights (1536 x 1024, one and two threads, 0.2-0.8 ms calls): the packed kernel packs the
    /// whole weight per call and cuts a few rows into too few tasks for two threads (bf16, 2 threads: 16 rows 0.60 against
    /// 0.23 ms here, 32 rows 0.54-0.75 against 0.43-0.46). An fp16 weight's widening costs three operations per vector, so
    /// it hands over at 16: 12 and 16 rows took 0.58 and 0.68 ms packed against 0.46 and 0.60 here on one thread (0.63 and
    /// 0.72 against 0.29 and 0.36 on two), 24 rows 0.77 against 0.88 on one thread.
    /// </summary>
    public static int MaxRows => typeof(TB) == typeof(float) || typeof(TB) == typeof(BFloat16) ? 32 : 16;

    /// <summary>Columns per task.</summary>
    private const int ColumnsPerTask = 32;

    private GemmJob<TA, TB, TC> _job;
    private float* _rows;   // A in float, rows padded to a whole number of vectors with zeros
    private int _pitch;

    /// <summary>Whether this path takes the product.</summary>
    public static bool Takes(in GemmJob<TA, TB, TC> job) => job.M <= MaxRows && job.B.RowStride == 1;

    public static void Run(in GemmJob<TA, TB, TC> job, int maxDegreeOfParallelism)
    {
        var work = NestedPerThread<NarrowGemmWork<TA, TB, TC, TOps, TVec>>.Current;
        int pitch = GemmBlocking.RoundUp(job.K, TOps.Count);
        // The calling thread's scratch holds A in float for every task (read-only while they run).
        var scratch = GemmScratch.For(GemmMicroKernel<TOps, TVec>.Rows, GemmMicroKernel<TOps, TVec>.Columns, job.M, pitch, needsTile: true);
        for (int r = 0; r < job.M; r++)
        {
            float* row = scratch.Tile + (nint)r * pitch;
            ElementConversion.ToSingle(job.A.At(r, 0), job.A.ColumnStride, job.K, row);
            for (int k = job.K; k < pitch; k++) row[k] = 0;
        }
        work._job = job;
        work._rows = scratch.Tile;
        work._pitch = pitch;
        try
        {
            CpuWorkerPool.Shared.Run(work, GemmBlocking.Tasks(job.N, ColumnsPerTask), maxDegreeOfParallelism, job.Work);
        }
        finally
        {
            work._job = default;
            work._rows = null;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void RunTask(int task)
    {
        ref readonly var job = ref _job;
        int first = task * ColumnsPerTask, end = Math.Min(job.N, first + ColumnsPerTask);
        TB* tails = stackalloc TB[4 * 16]; // each column's last partial vector, zero-padded
        TB** columns = stackalloc TB*[4];
        for (int column = first; column < end; column += 4)
        {
            int count = Math.Min(4, end - column);
            for (int c = 0; c < 4; c++) columns[c] = job.B.At(0, column + Math.Min(c, count - 1)); // past the edge: repeat the last (not stored)
            int whole = job.K / TOps.Count * TOps.Count, tail = job.K - whole;
            for (int c = 0; c < 4; c++)
                for (int k = 0; k < TOps.Count; k++) tails[c * 16 + k] = k < tail ? columns[c][whole + k] : default;
            int r = 0;
            if (TOps.Count == 16) for (; r + 4 <= job.M; r += 4) FourRows(r, column, count, columns, whole, tails);
            for (; r + 2 <= job.M; r += 2) TwoRows(r, column, count, columns, whole, tails);
            if (r < job.M) OneRow(r, column, count, columns, whole, tails);
        }
    }

    /// <summary>
    /// Four rows against the four columns (AVX-512: 16 accumulators, 8 loads per 16 FMAs): each column vector is loaded,
    /// and a 16-bit one widened, once for four rows instead of two. In one process against two-row passes (1536 x 1024
    /// weights, 4 to 32 rows, fp32 and bf16, one and two threads): 0.80-0.89 of the time. Every element keeps its one
    /// FMA chain over K, so the bits are those of <see cref="TwoRows"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void FourRows(int r, int column, int count, TB** b, int whole, TB* tails)
    {
        float* a0 = _rows + (nint)r * _pitch, a1 = a0 + _pitch, a2 = a1 + _pitch, a3 = a2 + _pitch;
        TVec s00 = TOps.Zero, s01 = TOps.Zero, s02 = TOps.Zero, s03 = TOps.Zero;
        TVec s10 = TOps.Zero, s11 = TOps.Zero, s12 = TOps.Zero, s13 = TOps.Zero;
        TVec s20 = TOps.Zero, s21 = TOps.Zero, s22 = TOps.Zero, s23 = TOps.Zero;
        TVec s30 = TOps.Zero, s31 = TOps.Zero, s32 = TOps.Zero, s33 = TOps.Zero;
        int w = TOps.Count, k = 0;
        TB* b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
        for (; k < whole; k += w)
            Step(a0 + k, a1 + k, a2 + k, a3 + k, Load(b0 + k), Load(b1 + k), Load(b2 + k), Load(b3 + k), ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13,
                ref s20, ref s21, ref s22, ref s23, ref s30, ref s31, ref s32, ref s33);
        if (k < _pitch) // the last partial vector: zero-padded copies of B's tails, A's padding is zero
            Step(a0 + k, a1 + k, a2 + k, a3 + k, Load(tails), Load(tails + 16), Load(tails + 32), Load(tails + 48), ref s00, ref s01, ref s02, ref s03, ref s10, ref s11, ref s12, ref s13,
                ref s20, ref s21, ref s22, ref s23, ref s30, ref s31, ref s32, ref s33);
        Store(r, column, count, s00, s01, s02, s03);
        Store(r + 1, column, count, s10, s11, s12, s13);
        Store(r + 2, column, count, s20, s21, s22, s23);
        Store(r + 3, column, count, s30, s31, s32, s33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(float* a0, float* a1, float* a2, float* a3, TVec c0, TVec c1, TVec c2, TVec c3,
        ref TVec s00, ref TVec s01, ref TVec s02, ref TVec s03, ref TVec s10, ref TVec s11, ref TVec s12, ref TVec s13,
        ref TVec s20, ref TVec s21, ref TVec s22, ref TVec s23, ref TVec s30, ref TVec s31, ref TVec s32, ref TVec s33)
    {
        TVec x = TOps.Load(a0);
        s00 = TOps.MultiplyAdd(x, c0, s00); s01 = TOps.MultiplyAdd(x, c1, s01); s02 = TOps.MultiplyAdd(x, c2, s02); s03 = TOps.MultiplyAdd(x, c3, s03);
        x = TOps.Load(a1);
        s10 = TOps.MultiplyAdd(x, c0, s10); s11 = TOps.MultiplyAdd(x, c1, s11); s12 = TOps.MultiplyAdd(x, c2, s12); s13 = TOps.MultiplyAdd(x, c3, s13);
        x = TOps.Load(a2);
        s20 = TOps.MultiplyAdd(x, c0, s20); s21 = TOps.MultiplyAdd(x, c1, s21); s22 = TOps.MultiplyAdd(x, c2, s22); s23 = TOps.MultiplyAdd(x, c3, s23);
        x = TOps.Load(a3);
        s30 = TOps.MultiplyAdd(x, c0, s30); s31 = TOps.MultiplyAdd(x, c1, s31); s32 = TOps.MultiplyAdd(x, c2, s32); s33 = TOps.MultiplyAdd(x, c3, s33);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void TwoRows(int r, int column, int count, TB** b, int whole, TB* tails)
    {
        float* a0 = _rows + (nint)r * _pitch, a1 = a0 + _pitch;
        TVec s00 = TOps.Zero, s01 = TOps.Zero, s02 = TOps.Zero, s03 = TOps.Zero;
        TVec s10 = TOps.Zero, s11 = TOps.Zero, s12 = TOps.Zero, s13 = TOps.Zero;
        int w = TOps.Count, k = 0;
        TB* b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
        for (; k < whole; k += w)
        {
            TVec x = TOps.Load(a0 + k), y = TOps.Load(a1 + k), c0 = Load(b0 + k), c1 = Load(b1 + k), c2 = Load(b2 + k), c3 = Load(b3 + k);
            s00 = TOps.MultiplyAdd(x, c0, s00); s01 = TOps.MultiplyAdd(x, c1, s01); s02 = TOps.MultiplyAdd(x, c2, s02); s03 = TOps.MultiplyAdd(x, c3, s03);
            s10 = TOps.MultiplyAdd(y, c0, s10); s11 = TOps.MultiplyAdd(y, c1, s11); s12 = TOps.MultiplyAdd(y, c2, s12); s13 = TOps.MultiplyAdd(y, c3, s13);
        }
        if (k < _pitch) // the last partial vector: zero-padded copies of B's tails, A's padding is zero
        {
            TVec x = TOps.Load(a0 + k), y = TOps.Load(a1 + k), c0 = Load(tails), c1 = Load(tails + 16), c2 = Load(tails + 32), c3 = Load(tails + 48);
            s00 = TOps.MultiplyAdd(x, c0, s00); s01 = TOps.MultiplyAdd(x, c1, s01); s02 = TOps.MultiplyAdd(x, c2, s02); s03 = TOps.MultiplyAdd(x, c3, s03);
            s10 = TOps.MultiplyAdd(y, c0, s10); s11 = TOps.MultiplyAdd(y, c1, s11); s12 = TOps.MultiplyAdd(y, c2, s12); s13 = TOps.MultiplyAdd(y, c3, s13);
        }
        Store(r, column, count, s00, s01, s02, s03);
        Store(r + 1, column, count, s10, s11, s12, s13);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OneRow(int r, int column, int count, TB** b, int whole, TB* tails)
    {
        float* a0 = _rows + (nint)r * _pitch;
        TVec s00 = TOps.Zero, s01 = TOps.Zero, s02 = TOps.Zero, s03 = TOps.Zero;
        int w = TOps.Count, k = 0;
        TB* b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
        for (; k < whole; k += w)
        {
            TVec x = TOps.Load(a0 + k);
            s00 = TOps.MultiplyAdd(x, Load(b0 + k), s00); s01 = TOps.MultiplyAdd(x, Load(b1 + k), s01);
            s02 = TOps.MultiplyAdd(x, Load(b2 + k), s02); s03 = TOps.MultiplyAdd(x, Load(b3 + k), s03);
        }
        if (k < _pitch)
        {
            TVec x = TOps.Load(a0 + k);
            s00 = TOps.MultiplyAdd(x, Load(tails), s00); s01 = TOps.MultiplyAdd(x, Load(tails + 16), s01);
            s02 = TOps.MultiplyAdd(x, Load(tails + 32), s02); s03 = TOps.MultiplyAdd(x, Load(tails + 48), s03);
        }
        Store(r, column, count, s00, s01, s02, s03);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec Load(TB* source) => ElementLoads<TOps, TVec>.Load(source);

    private void Store(int r, int column, int count, TVec s0, TVec s1, TVec s2, TVec s3)
    {
        ref readonly var job = ref _job;
        var sums = TOps.SumFour(s0, s1, s2, s3);
        for (int c = 0; c < count; c++)
        {
            float value = job.Bias == null ? sums[c] : sums[c] + ElementTypes.ToSingle(job.Bias[column + c]);
            *job.C.At(r, column + c) = ElementTypes.FromSingle<TC>(value);
        }
    }
}
