using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Cpu.Decode;
using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>Runs the CPU attention forward of one job on the chosen vector width and thread count.</summary>
internal static class CpuForward
{
    /// <summary>One kernel specialisation per (mask, score) type pair; plain calls use (KeepAll, IdentityScore).</summary>
    public static void Run<T, TMask, TScore>(in CpuAttentionJob<T> job, in FlexMods<TMask, TScore> mods, CpuIsa isa, int maxDegreeOfParallelism)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        switch (CpuIsaSelection.Resolve(isa))
        {
            case CpuIsa.Avx512: ForwardWork<T, Vector512Ops, Vector512<float>, TMask, TScore>.Run(job, mods, maxDegreeOfParallelism); break;
            case CpuIsa.Avx2: ForwardWork<T, Vector256Ops, Vector256<float>, TMask, TScore>.Run(job, mods, maxDegreeOfParallelism); break;
            default: ForwardWork<T, Vector128Ops, Vector128<float>, TMask, TScore>.Run(job, mods, maxDegreeOfParallelism); break;
        }
    }
}

/// <summary>
/// One call's tasks for the worker pool: the tile kernel's row tiles, or the decode kernel's key splits followed by
/// their merge. One instance per calling thread, nesting depth and specialisation, reused call after call (no per-call garbage).
/// </summary>
internal sealed class ForwardWork<T, TOps, TVec, TMask, TScore> : PoolWork
    where T : unmanaged where TOps : struct, IVectorOps<TVec> where TVec : struct
    where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    private enum Phase { Tiles, DecodeSplits, DecodeMerge }

    private CpuAttentionJob<T> _job;
    private FlexMods<TMask, TScore> _mods;
    private Phase _phase;
    private DecodeSplits _splits;
    private DecodePartials? _partials;

    public static void Run(in CpuAttentionJob<T> job, in FlexMods<TMask, TScore> mods, int maxDegreeOfParallelism)
    {
        var work = NestedPerThread<ForwardWork<T, TOps, TVec, TMask, TScore>>.Current;
        work._job = job;
        work._mods = mods;
        try
        {
            if (DecodeKernel<T, TOps, TVec, TMask, TScore>.Applies(job)) work.RunDecode(maxDegreeOfParallelism);
            else work.RunPhase(Phase.Tiles, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TaskCount(job), maxDegreeOfParallelism, WorkEstimate.Forward(job));
        }
        finally
        {
            // Pointers into the caller's (now unpinned) memory must not outlive the call.
            work._job = default;
            work._mods = default;
            work._partials = null;
        }
    }

    private void RunDecode(int maxDegreeOfParallelism)
    {
        _splits = DecodeKernel<T, TOps, TVec, TMask, TScore>.Splits(_job);
        int heads = _job.Batch * _job.KvHeads;
        if (_splits.Count > 1)
        {
            int rows = _job.RowsPerKvHead, c = TOps.Count;
            _partials = DecodePartials.For((long)heads * _splits.Count, rows, (_job.ValueDim + c - 1) / c * c);
        }
        RunPhase(Phase.DecodeSplits, heads * _splits.Count, maxDegreeOfParallelism, WorkEstimate.Forward(_job));
        if (_splits.Count > 1) RunPhase(Phase.DecodeMerge, heads, maxDegreeOfParallelism, WorkEstimate.Merge(_job, _splits.Count));
    }

    private void RunPhase(Phase phase, int tasks, int maxDegreeOfParallelism, double flops)
    {
        _phase = phase;
        CpuWorkerPool.Shared.Run(this, tasks, maxDegreeOfParallelism, flops);
    }

    protected override void RunTask(int task)
    {
        switch (_phase)
        {
            case Phase.Tiles: FlashForwardKernel<T, TOps, TVec, TMask, TScore>.RunTask(_job, task, _mods); break;
            case Phase.DecodeSplits: DecodeKernel<T, TOps, TVec, TMask, TScore>.RunSplit(_job, _splits, task, _partials, _mods); break;
            default: DecodeKernel<T, TOps, TVec, TMask, TScore>.Merge(_job, _splits, task, _partials!); break;
        }
    }
}
