using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// One product's tasks for the worker pool: each task owns a tile of C and runs the BLIS loop nest over it (for each
/// KC slice: pack the tile's B block; for each MC block of rows: pack A, then every micro-tile). KC slices are summed in
/// order inside a task, so the bits of C do not depend on the thread count or the tile size. One instance per calling
/// thread, nesting depth and specialisation, reused.
/// <para>Cut into several tiles, every tile packed its own copy of its A rows and B columns: A once per column tile (4
/// times at 2048³ on two threads) and B once per row tile. Products whose packed operands fit
/// <see cref="MaxSharedFloats"/> instead pack A and B once, in a first round of tasks (blocks of A's rows and slices of
/// B's columns, in parallel), into panels all tiles then read. Packing is pure data movement: the bits are the same.</para>
/// </summary>
internal sealed unsafe class GemmWork<TA, TB, TC, TOps, TVec> : PoolWork
    where TA : unmanaged where TB : unmanaged where TC : unmanaged
    where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    private GemmJob<TA, TB, TC> _job;
    private int _tileRows, _tileColumns, _tilesAcross;
    private float* _sharedA, _sharedB; // A and B packed once for the call, or null: each task packs its own blocks
    private int _packing; // 1 while the pool runs the packing round

    /// <summary>Most floats of the shared panels (32 MB); larger products pack per tile.</summary>
    private const long MaxSharedFloats = 8L << 20;

    /// <summary>Columns of B one packing task packs per KC slice.</summary>
    private const int PackColumns = 512;

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
        int threads = CpuWorkerPool.Shared.ThreadsFor(int.MaxValue, maxDegreeOfParallelism, job.Work);
        var (rows, columns) = GemmBlocking.TaskTile(job.M, job.N, MR, NR, threads);
        // Shared panels are addressed by whole MC blocks of rows, so their tiles start on one: used when that still
        // gives the threads as many tasks (a few hundred rows against a narrow B would otherwise run on one thread).
        var (sharedRows, sharedColumns) = GemmBlocking.TaskTile(job.M, job.N, GemmBlocking.MC, NR, threads);
        long tiles = (long)GemmBlocking.Tasks(job.M, rows) * GemmBlocking.Tasks(job.N, columns);
        long sharedTiles = (long)GemmBlocking.Tasks(job.M, sharedRows) * GemmBlocking.Tasks(job.N, sharedColumns);
        bool shared = tiles > 1 && sharedTiles >= Math.Min(tiles, 3L * threads) && SharedFloats(job) <= MaxSharedFloats;
        if (shared) (rows, columns) = (sharedRows, sharedColumns);
        work._job = job;
        work._tileRows = rows;
        work._tileColumns = columns;
        work._tilesAcross = GemmBlocking.Tasks(job.N, columns);
        long tasks = (long)GemmBlocking.Tasks(job.M, rows) * work._tilesAcross;
        try
        {
            if (shared)
            {
                // Round 1 packs A and B once; round 2 computes the tiles from the shared panels.
                work._sharedA = NestedPerThread<GemmSharedPanels>.Current.Floats(SharedFloats(job));
                work._sharedB = work._sharedA + SharedAFloats(job);
                work._packing = 1;
                CpuWorkerPool.Shared.Run(work, Slices(job) * (ABlocks(job) + BBlocks(job)), maxDegreeOfParallelism, job.Work);
                work._packing = 0;
            }
            CpuWorkerPool.Shared.Run(work, checked((int)tasks), maxDegreeOfParallelism, job.Work);
        }
        finally
        {
            work._job = default; // drop the pointers into the caller's memory
            work._sharedA = work._sharedB = null;
            work._packing = 0;
        }
    }

    private static int Slices(in GemmJob<TA, TB, TC> job) => GemmBlocking.Tasks(job.K, GemmBlocking.KC);
    private static int ABlocks(in GemmJob<TA, TB, TC> job) => GemmBlocking.Tasks(job.M, GemmBlocking.MC);
    private static int BBlocks(in GemmJob<TA, TB, TC> job) => GemmBlocking.Tasks(job.N, PackColumns);

    /// <summary>
    /// Floats of one packed MC x KC block of A in the shared panels: its panels, then the slack a 6-row panel's last
    /// 8-wide run spills into (another thread packs the next block), rounded to 64-byte lines.
    /// </summary>
    private static long ABlockFloats => GemmBlocking.RoundUp(GemmBlocking.RoundUp(GemmBlocking.MC, MR) * GemmBlocking.KC + GemmPacking.PanelSlack, 16);

    private static long SharedAFloats(in GemmJob<TA, TB, TC> job) => (long)Slices(job) * ABlocks(job) * ABlockFloats;

    /// <summary>Floats of the shared panels: every MC x KC block of A, and every KC slice of B (columns rounded up to panels).</summary>
    private static long SharedFloats(in GemmJob<TA, TB, TC> job) =>
        SharedAFloats(job) + (long)Slices(job) * GemmBlocking.KC * GemmBlocking.RoundUp(job.N, NR);

    /// <summary>The packed block of A's rows [block·MC, +MC) in KC slice <paramref name="slice"/>.</summary>
    private float* SharedA(int slice, int block) => _sharedA + ((long)slice * ABlocks(_job) + block) * ABlockFloats;

    /// <summary>The packed B of KC slice <paramref name="slice"/>: panels of all columns, panel q (kc x NR) q·NR·kc floats in.</summary>
    private float* SharedB(int slice) => _sharedB + (long)slice * GemmBlocking.KC * GemmBlocking.RoundUp(_job.N, NR);

    /// <summary>Packing round: one MC x KC block of A, or one KC slice of <see cref="PackColumns"/> columns of B.</summary>
    private void PackShared(int task)
    {
        ref readonly var job = ref _job;
        int aBlocks = ABlocks(job), blocks = aBlocks + BBlocks(job);
        int slice = task / blocks, block = task % blocks, k0 = slice * GemmBlocking.KC, kc = Math.Min(GemmBlocking.KC, job.K - k0);
        var scratch = GemmScratch.For(MR, NR, 0, 0, needsTile: false, packsB: false);
        if (block < aBlocks)
        {
            int row0 = block * GemmBlocking.MC;
            GemmPacking.PackA(job.A, row0, Math.Min(GemmBlocking.MC, job.M - row0), k0, kc, MR, SharedA(slice, block), scratch.Widened);
        }
        else
        {
            int column0 = (block - aBlocks) * PackColumns;
            GemmPacking.PackB(job.B, k0, kc, column0, Math.Min(PackColumns, job.N - column0), NR, SharedB(slice) + (nint)column0 * kc, scratch.Widened);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void RunTask(int task)
    {
        if (_packing != 0)
        {
            PackShared(task);
            return;
        }
        ref readonly var job = ref _job;
        int row0 = task / _tilesAcross * _tileRows, column0 = task % _tilesAcross * _tileColumns;
        int rows = Math.Min(_tileRows, job.M - row0), columns = Math.Min(_tileColumns, job.N - column0);
        bool inPlace = InPlace(job);
        bool shared = _sharedA != null;
        var scratch = GemmScratch.For(MR, NR, _tileRows, _tileColumns, needsTile: !inPlace, packsB: !shared);
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
            float* packedB = scratch.PackedB;
            if (shared) packedB = SharedB(k0 / GemmBlocking.KC) + (nint)column0 * kc;
            else GemmPacking.PackB(job.B, k0, kc, column0, columns, NR, packedB, scratch.Widened);
            for (int i0 = 0; i0 < rows; i0 += GemmBlocking.MC)
            {
                int mc = Math.Min(GemmBlocking.MC, rows - i0);
                float* packedA = scratch.PackedA;
                if (shared) packedA = SharedA(k0 / GemmBlocking.KC, (row0 + i0) / GemmBlocking.MC);
                else GemmPacking.PackA(job.A, row0 + i0, mc, k0, kc, MR, packedA, scratch.Widened);
                for (int j = 0; j < columns; j += NR)
                {
                    float* panelB = packedB + (nint)j * kc;
                    float* tileBias = bias == null || accumulate ? null : bias + j;
                    int width = Math.Min(NR, columns - j);
                    for (int i = 0; i < mc; i += MR)
                    {
                        float* panelA = packedA + (nint)i * kc;
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
