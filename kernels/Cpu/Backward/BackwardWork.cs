using System.Runtime.Intrinsics;
using AttentionEngine.Bindings.Memory;
using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu.Backward;

/// <summary>
/// Runs the CPU backward of one job on the chosen vector width: a single pass per (batch, KV head) when there are
/// enough of them for the threads, else phase 1 (dQ per row tile) then phase 2 (dK, dV per key tile).
/// </summary>
internal static class CpuBackward
{
    /// <summary>
    /// The backward; with <paramref name="statisticsOnly"/>, only its first phase: into <c>job.RowStatistics</c>
    /// ([B][Hq][Lq] pairs), the softmax max and 1 / sum of every row whose saved LSE is too coarse
    /// (<see cref="LsePrecision"/>), other rows not written. The latter is for a backend whose kernels take these
    /// statistics from the host (CUDA).
    /// </summary>
    public static void Run<T, TMask, TScore>(in CpuBackwardJob<T> job, in FlexMods<TMask, TScore> mods, CpuIsa isa, int maxDegreeOfParallelism,
        bool statisticsOnly = false)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        switch (CpuIsaSelection.Resolve(isa))
        {
            case CpuIsa.Avx512: BackwardWork<T, Vector512Ops, Vector512<float>, TMask, TScore>.Run(job, mods, maxDegreeOfParallelism, statisticsOnly); break;
            case CpuIsa.Avx2: BackwardWork<T, Vector256Ops, Vector256<float>, TMask, TScore>.Run(job, mods, maxDegreeOfParallelism, statisticsOnly); break;
            default: BackwardWork<T, Vector128Ops, Vector128<float>, TMask, TScore>.Run(job, mods, maxDegreeOfParallelism, statisticsOnly); break;
        }
    }
}

/// <summary>The backward's tasks for the worker pool; one instance per calling thread, nesting depth and specialisation.</summary>
internal sealed class BackwardWork<T, TOps, TVec, TMask, TScore> : PoolWork
    where T : unmanaged where TOps : struct, IVectorOps<TVec> where TVec : struct
    where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    private enum Phase { RowStatistics, QueryTiles, KeyTiles, Heads }

    private CpuBackwardJob<T> _job;
    private FlexMods<TMask, TScore> _mods;
    private Phase _phase;

    public static unsafe void Run(in CpuBackwardJob<T> job, in FlexMods<TMask, TScore> mods, int maxDegreeOfParallelism, bool statisticsOnly)
    {
        var work = NestedPerThread<BackwardWork<T, TOps, TVec, TMask, TScore>>.Current;
        work._job = job;
        work._mods = mods;
        AlignedMemoryHandle? statistics = null;
        try
        {
            if (statisticsOnly || AnyCoarseLse(job))
            {
                // Rare (huge or padding-bias scores): recompute those rows' max and sum before differentiating, into
                // the caller's buffer when it wants nothing else.
                if (!statisticsOnly)
                {
                    statistics = AlignedMemoryHandle.Allocate((nuint)((long)job.Forward.Batch * job.Forward.QueryHeads * job.Forward.QueryLength * 2 * sizeof(float)));
                    work._job = job with { RowStatistics = (float*)statistics.DangerousGetHandle() };
                }
                work._phase = Phase.RowStatistics;
                CpuWorkerPool.Shared.Run(work, BackwardKernel<T, TOps, TVec, TMask, TScore>.QueryTaskCount(job), maxDegreeOfParallelism, WorkEstimate.Forward(job.Forward));
                if (statisticsOnly) return;
            }
            int heads = job.Forward.Batch * job.Forward.KvHeads;
            if (heads >= 2 * Math.Min(maxDegreeOfParallelism, Environment.ProcessorCount))
            {
                // Enough (batch, KV head) tasks to share out: one pass, S and dP computed once. Same bits as below.
                work._phase = Phase.Heads;
                CpuWorkerPool.Shared.Run(work, heads, maxDegreeOfParallelism, WorkEstimate.Backward(job.Forward));
                return;
            }
            work._phase = Phase.QueryTiles;
            CpuWorkerPool.Shared.Run(work, BackwardKernel<T, TOps, TVec, TMask, TScore>.QueryTaskCount(job), maxDegreeOfParallelism, WorkEstimate.Backward(job.Forward) / 2);
            work._phase = Phase.KeyTiles;
            CpuWorkerPool.Shared.Run(work, BackwardKernel<T, TOps, TVec, TMask, TScore>.KeyTaskCount(job), maxDegreeOfParallelism, WorkEstimate.Backward(job.Forward) / 2);
        }
        finally
        {
            work._job = default; // pointers into the caller's memory must not outlive the call
            work._mods = default;
            statistics?.Dispose();
        }
    }

    private static bool AnyCoarseLse(in CpuBackwardJob<T> job)
    {
        var f = job.Forward;
        for (int b = 0; b < f.Batch; b++)
        for (int h = 0; h < f.QueryHeads; h++)
        for (int i = 0; i < f.QueryLength; i++)
            if (LsePrecision.IsCoarse(job.Lse[b, h, i, 0])) return true;
        return false;
    }

    protected override void RunTask(int task)
    {
        switch (_phase)
        {
            case Phase.RowStatistics: BackwardKernel<T, TOps, TVec, TMask, TScore>.RunRowStatistics(_job, task, _mods); break;
            case Phase.QueryTiles: BackwardKernel<T, TOps, TVec, TMask, TScore>.RunQueryTile(_job, task, _mods); break;
            case Phase.KeyTiles: BackwardKernel<T, TOps, TVec, TMask, TScore>.RunKeyTile(_job, task, _mods); break;
            default: BackwardKernel<T, TOps, TVec, TMask, TScore>.RunHead(_job, task, _mods); break;
        }
    }
}
