using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// One product's tasks for the worker pool: each task owns a tile of C and runs the BLIS loop nest over it (for each
/// KC slice: pack the tile's B block; for each MC block of rows: pack A, then every micro-tile). Tasks share nothing
/// but the read-only inputs, and KC slices are summed in order inside a task, so the bits of C do not depend on the
/// thread count or the tile size. One instance per calling thread, nesting depth and specialisation, reused.
/// </summary>
internal sealed unsafe class GemmWork<TA, TB, TC, TOps, TVec> : PoolWork
    where TA : unmanaged where TB : unmanaged where TC : unmanaged
    where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    private GemmJob<TA, TB, TC> _job;
    private int _tileRows, _tileColumns, _tilesAcross;

    private static int MR => GemmMicroKernel<TOps, TVec>.Rows;
    private static int NR => GemmMicroKernel<TOps, TVec>.Columns;

    /// <summary>C is written in place (float, unit column stride); otherwise each task sums into a float tile first.</summary>
    private static bool InPlace(in GemmJob<TA, TB, TC> job) => typeof(TC) == typeof(float) && job.C.ColumnStride == 1;

    public static void Run(in GemmJob<TA, TB, TC> job, int maxDegreeOfParallelism)
    {
        if (job.M == 0 || job.N == 0) return;
        if (job.K == 0)
        {
            FillWithBias(job);
            return;
        }
        if (NarrowGemmWork<TA, TB, TC, TOps, TVec>.Takes(job))
        {
            NarrowGemmWork<TA, TB, TC, TOps, TVec>.Run(job, maxDegreeOfParallelism);
            return;
        }
        var work = NestedPerThread<GemmWork<TA, TB, TC, TOps, TVec>>.Current;
        int threads = CpuWorkerPool.Shared.ThreadsFor(int.MaxValue, maxDegreeOfParallelism, job.Flops);
        var (rows, columns) = GemmBlocking.TaskTile(job.M, job.N, MR, NR, threads);
        work._job = job;
        work._tileRows = rows;
        work._tileColumns = columns;
        work._tilesAcross = GemmBlocking.Tasks(job.N, columns);
        long tasks = (long)GemmBlocking.Tasks(job.M, rows) * work._tilesAcross;
        try
        {
            CpuWorkerPool.Shared.Run(work, checked((int)tasks), maxDegreeOfParallelism, job.Flops);
        }
        finally
        {
            work._job = default; // drop the pointers into the caller's memory
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void RunTask(int task)
    {
        ref readonly var job = ref _job;
        int row0 = task / _tilesAcross * _tileRows, column0 = task % _tilesAcross * _tileColumns;
        int rows = Math.Min(_tileRows, job.M - row0), columns = Math.Min(_tileColumns, job.N - column0);
        bool inPlace = InPlace(job);
        var scratch = GemmScratch.For(MR, NR, _tileRows, _tileColumns, needsTile: !inPlace);
        float* c = inPlace ? (float*)job.C.At(row0, column0) : scratch.Tile;
        nint ldc = inPlace ? job.C.RowStride : _tileColumns;
        float* bias = null;
        if (job.Bias != null)
        {
            ElementConversion.ToSingle(job.Bias + column0, 1, columns, scratch.Bias);
            bias = scratch.Bias;
        }

        for (int k0 = 0; k0 < job.K; k0 += GemmBlocking.KC)
        {
            int kc = Math.Min(GemmBlocking.KC, job.K - k0);
            bool accumulate = k0 > 0;
            GemmPacking.PackB(job.B, k0, kc, column0, columns, NR, scratch.PackedB, scratch.Widened);
            for (int i0 = 0; i0 < rows; i0 += GemmBlocking.MC)
            {
                int mc = Math.Min(GemmBlocking.MC, rows - i0);
                GemmPacking.PackA(job.A, row0 + i0, mc, k0, kc, MR, scratch.PackedA, scratch.Widened);
                for (int j = 0; j < columns; j += NR)
                {
                    float* panelB = scratch.PackedB + (nint)j * kc;
                    float* tileBias = bias == null || accumulate ? null : bias + j;
                    int width = Math.Min(NR, columns - j);
                    for (int i = 0; i < mc; i += MR)
                    {
                        float* panelA = scratch.PackedA + (nint)i * kc;
                        float* target = c + (i0 + i) * ldc + j;
                        int height = Math.Min(MR, mc - i);
                        if (height == MR && width == NR)
                            GemmMicroKernel<TOps, TVec>.Multiply(panelA, panelB, kc, target, ldc, accumulate, tileBias);
                        else
                            GemmMicroKernel<TOps, TVec>.MultiplyEdge(panelA, panelB, kc, target, ldc, accumulate, tileBias, height, width, scratch.Edge);
                    }
                }
            }
        }
        if (!inPlace)
            for (int r = 0; r < rows; r++)
            {
                TC* destination = job.C.At(row0 + r, column0);
                ElementConversion.FromSingle(scratch.Tile + (nint)r * ldc, columns, destination, job.C.ColumnStride);
            }
    }

    /// <summary>K = 0: every element of C is the empty sum, plus the bias.</summary>
    private static void FillWithBias(in GemmJob<TA, TB, TC> job)
    {
        for (int r = 0; r < job.M; r++)
            for (int n = 0; n < job.N; n++)
                *job.C.At(r, n) = ElementTypes.FromSingle<TC>(job.Bias == null ? 0f : ElementTypes.ToSingle(job.Bias[n]));
    }
}
