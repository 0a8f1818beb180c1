using AttentionEngine.Bindings.Memory;
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

    /// <summary>
    /// Several independent jobs (the sequences of a packed variable-length batch) as one set of row tiles, so short
    /// sequences share the threads instead of each call waking them. Every job's rows get the same bits as its own call.
    /// </summary>
    public static void RunMany<T>(ReadOnlySpan<CpuAttentionJob<T>> jobs, CpuIsa isa, int maxDegreeOfParallelism) where T : unmanaged
    {
        switch (CpuIsaSelection.Resolve(isa))
        {
            case CpuIsa.Avx512: ForwardWork<T, Vector512Ops, Vector512<float>, KeepAll, IdentityScore>.RunMany(jobs, maxDegreeOfParallelism); break;
            case CpuIsa.Avx2: ForwardWork<T, Vector256Ops, Vector256<float>, KeepAll, IdentityScore>.RunMany(jobs, maxDegreeOfParallelism); break;
            default: ForwardWork<T, Vector128Ops, Vector128<float>, KeepAll, IdentityScore>.RunMany(jobs, maxDegreeOfParallelism); break;
        }
    }
}

/// <summary>
/// One call's tasks for the worker pool: the tile kernel's row tiles, or the decode kernel's key splits followed by
/// their merge. One instance per calling thread, nesting depth and specialisation, reused call after call (no per-call garbage).
/// </summary>
internal sealed unsafe class ForwardWork<T, TOps, TVec, TMask, TScore> : PoolWork
    where T : unmanaged where TOps : struct, IVectorOps<TVec> where TVec : struct
    where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    private enum Phase { Tiles, Widen, DecodeSplits, DecodeMerge, ManyWiden, ManyTiles, ManyMerges }

    private CpuAttentionJob<T> _job;
    private FlexMods<TMask, TScore> _mods;
    private Phase _phase;
    private DecodeSplits _splits;
    private DecodePartials? _partials;
    private CpuAttentionJob<T>[] _many = [];   // RunMany's jobs, reused call after call (cleared after each)
    private long[] _firstTask = [];            // RunMany: first task of each job, then the total
    private long[] _firstMerge = [];           // RunMany: first merge task of each job, then the total
    private long[] _firstSlot = [];            // RunMany: first partials slot of each decode job
    private DecodeSplits[] _manySplits = [];   // RunMany: each decode job's splits (Count 0 for tile jobs)
    private long[] _firstWiden = [];           // RunMany: first widen task of each job, then the total
    private long[] _wideAt = [];               // RunMany: where each job's K/V copies start in the call's copy block (floats)
    private byte[] _wideParts = [];            // RunMany: 1 = K copied, 2 = V copied
    private int _manyCount;

    public static void Run(in CpuAttentionJob<T> job, in FlexMods<TMask, TScore> mods, int maxDegreeOfParallelism)
    {
        var work = NestedPerThread<ForwardWork<T, TOps, TVec, TMask, TScore>>.Current;
        work._job = job;
        work._mods = mods;
        try
        {
            if (DecodeKernel<T, TOps, TVec, TMask, TScore>.Applies(job)) work.RunDecode(maxDegreeOfParallelism);
            else work.RunTiles(maxDegreeOfParallelism);
        }
        finally
        {
            // Pointers into the caller's (now unpinned) memory must not outlive the call.
            work._job = default;
            work._mods = default;
            work._partials = null;
        }
    }

    /// <summary>
    /// Runs every job as its own call would (tile kernel, or decode splits then their merge for few-query jobs), as
    /// two pool runs over all jobs together: first every tile and split, then every merge. Decode jobs share one
    /// partials buffer, each from its own first slot; slots are sized for the largest job's rows.
    /// </summary>
    public static void RunMany(ReadOnlySpan<CpuAttentionJob<T>> jobs, int maxDegreeOfParallelism)
    {
        var work = NestedPerThread<ForwardWork<T, TOps, TVec, TMask, TScore>>.Current;
        if (work._many.Length < jobs.Length)
        {
            work._many = new CpuAttentionJob<T>[jobs.Length];
            work._firstTask = new long[jobs.Length + 1];
            work._firstMerge = new long[jobs.Length + 1];
            work._firstSlot = new long[jobs.Length];
            work._manySplits = new DecodeSplits[jobs.Length];
            work._firstWiden = new long[jobs.Length + 1];
            work._wideAt = new long[jobs.Length];
            work._wideParts = new byte[jobs.Length];
        }
        double flops = 0, mergeFlops = 0;
        long tasks = 0, merges = 0, slots = 0, widenTasks = 0, wideFloats = 0;
        int maxRows = 1, vectorCount = TOps.Count, dvPad = (jobs[0].ValueDim + vectorCount - 1) / vectorCount * vectorCount;
        for (int n = 0; n < jobs.Length; n++)
        {
            var job = jobs[n];
            work._many[n] = job;
            work._firstTask[n] = tasks;
            work._firstMerge[n] = merges;
            flops += WorkEstimate.Forward(job);
            if (DecodeKernel<T, TOps, TVec, TMask, TScore>.Applies(job))
            {
                var splits = DecodeKernel<T, TOps, TVec, TMask, TScore>.Splits(job);
                work._manySplits[n] = splits;
                int heads = job.Batch * job.KvHeads;
                tasks += (long)heads * splits.Count;
                work._firstSlot[n] = slots;
                if (splits.Count > 1)
                {
                    slots += (long)heads * splits.Count;
                    merges += heads;
                    mergeFlops += WorkEstimate.Merge(job, splits.Count);
                    maxRows = Math.Max(maxRows, job.RowsPerKvHead);
                }
            }
            else
            {
                work._manySplits[n] = default;
                tasks += FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TaskCount(job);
            }
            // Tile jobs get float copies of K and V as their own calls would (KeyValueWidening), within one budget for all.
            work._firstWiden[n] = widenTasks;
            work._wideParts[n] = 0;
            if (work._manySplits[n].Count == 0
                && KeyValueWidening.Pays(job, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TileRows, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.KeyBlock,
                    dvPad, vectorCount, hasBlockMask: false, out bool keys, out bool values)
                && (wideFloats * sizeof(float) + KeyValueWidening.Bytes(job, dvPad, keys, values)) <= KeyValueWidening.MaxBytes)
            {
                work._wideParts[n] = (byte)((keys ? 1 : 0) | (values ? 2 : 0));
                work._wideAt[n] = wideFloats;
                wideFloats += KeyValueWidening.Bytes(job, dvPad, keys, values) / sizeof(float);
                widenTasks += (long)job.Batch * job.KvHeads;
            }
        }
        work._firstWiden[jobs.Length] = widenTasks;
        work._firstTask[jobs.Length] = tasks;
        work._firstMerge[jobs.Length] = merges;
        work._manyCount = jobs.Length;
        work._mods = FlexMods<TMask, TScore>.None(default);
        AlignedMemoryHandle? copies = null;
        try
        {
            if (slots > 0) work._partials = DecodePartials.For(slots, maxRows, dvPad);
            if (widenTasks > 0)
            {
                copies = AlignedMemoryHandle.Allocate((nuint)(wideFloats * sizeof(float)));
                float* wide = (float*)copies.DangerousGetHandle();
                for (int n = 0; n < jobs.Length; n++)
                    if (work._wideParts[n] != 0)
                        work._many[n] = KeyValueWidening.WithCopies(work._many[n], wide + work._wideAt[n], dvPad, (work._wideParts[n] & 1) != 0, (work._wideParts[n] & 2) != 0);
                work.RunPhase(Phase.ManyWiden, checked((int)widenTasks), maxDegreeOfParallelism, 8.0 * wideFloats);
            }
            work.RunPhase(Phase.ManyTiles, checked((int)tasks), maxDegreeOfParallelism, flops);
            if (merges > 0) work.RunPhase(Phase.ManyMerges, checked((int)merges), maxDegreeOfParallelism, mergeFlops);
        }
        finally
        {
            Array.Clear(work._many, 0, jobs.Length); // pointers into the caller's memory must not outlive the call
            work._manyCount = 0;
            work._mods = default;
            work._partials = null;
            copies?.Dispose();
        }
    }

    /// <summary>RunMany: fills the copies of one (job, batch·KV head); jobs without copies have no widen tasks.</summary>
    private void RunManyWiden(int task)
    {
        int n = JobOf(_firstWiden, task);
        KeyValueWidening.WidenHead(_many[n], (int)(task - _firstWiden[n]));
    }

    /// <summary>The job whose task range holds <paramref name="task"/> (binary search over the jobs' first tasks).</summary>
    private int JobOf(long[] first, int task)
    {
        int lo = 0, hi = _manyCount - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (first[mid] <= task) lo = mid; else hi = mid - 1;
        }
        return lo;
    }

    private void RunManyTask(int task)
    {
        int n = JobOf(_firstTask, task);
        int local = (int)(task - _firstTask[n]);
        var splits = _manySplits[n];
        if (splits.Count == 0) FlashForwardKernel<T, TOps, TVec, TMask, TScore>.RunTask(_many[n], local, _mods);
        else DecodeKernel<T, TOps, TVec, TMask, TScore>.RunSplit(_many[n], splits, local, _partials, _mods, _firstSlot[n]);
    }

    private void RunManyMerge(int task)
    {
        int n = JobOf(_firstMerge, task);
        DecodeKernel<T, TOps, TVec, TMask, TScore>.Merge(_many[n], _manySplits[n], (int)(task - _firstMerge[n]), _partials!, _firstSlot[n]);
    }

    /// <summary>The tile kernel's row tiles, after widening K and V once when that saves the tiles repeated staging.</summary>
    private void RunTiles(int maxDegreeOfParallelism)
    {
        int c = TOps.Count, dvPad = (_job.ValueDim + c - 1) / c * c;
        if (!KeyValueWidening.Pays(_job, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TileRows, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.KeyBlock,
                dvPad, c, _mods.Kinds != null, out bool keys, out bool values))
        {
            RunPhase(Phase.Tiles, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TaskCount(_job), maxDegreeOfParallelism, WorkEstimate.Forward(_job));
            return;
        }
        using var copies = AlignedMemoryHandle.Allocate((nuint)KeyValueWidening.Bytes(_job, dvPad, keys, values));
        _job = KeyValueWidening.WithCopies(_job, (float*)copies.DangerousGetHandle(), dvPad, keys, values);
        RunPhase(Phase.Widen, _job.Batch * _job.KvHeads, maxDegreeOfParallelism, 8.0 * _job.Batch * _job.KvHeads * _job.KeyLength * (_job.HeadDim + dvPad));
        RunPhase(Phase.Tiles, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TaskCount(_job), maxDegreeOfParallelism, WorkEstimate.Forward(_job));
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
            case Phase.Widen: KeyValueWidening.WidenHead(_job, task); break;
            case Phase.ManyWiden: RunManyWiden(task); break;
            case Phase.ManyTiles: RunManyTask(task); break;
            case Phase.ManyMerges: RunManyMerge(task); break;
            case Phase.DecodeSplits: DecodeKernel<T, TOps, TVec, TMask, TScore>.RunSplit(_job, _splits, task, _partials, _mods); break;
            default: DecodeKernel<T, TOps, TVec, TMask, TScore>.Merge(_job, _splits, task, _partials!); break;
        }
    }
}
