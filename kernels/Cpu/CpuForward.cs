using System.Runtime.Intrinsics;
using AttentionEngine.Bindings.Memory;
using AttentionEngine.Kernels.Cpu.Decode;
using AttentionEngine.Kernels.Cpu.Int8Scores;
using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>Runs the CPU attention forward of one job, or of several (a packed batch), on the chosen vector width and thread count.</summary>
internal static class CpuForward
{
    /// <summary>One kernel specialisation per (mask, score) type pair; plain calls use (KeepAll, IdentityScore).</summary>
    public static void Run<T, TMask, TScore>(in CpuAttentionJob<T> job, in FlexMods<TMask, TScore> mods, CpuIsa isa, int maxDegreeOfParallelism)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod =>
        RunMany(new ReadOnlySpan<CpuAttentionJob<T>>(in job), mods, isa, maxDegreeOfParallelism);

    /// <summary>
    /// Several independent jobs (the sequences of a packed variable-length batch) as one set of tasks, so short
    /// sequences share the threads instead of each call waking them. Every job's rows get the same bits as its own call.
    /// </summary>
    public static void RunMany<T, TMask, TScore>(ReadOnlySpan<CpuAttentionJob<T>> jobs, in FlexMods<TMask, TScore> mods, CpuIsa isa, int maxDegreeOfParallelism)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        switch (CpuIsaSelection.Resolve(isa))
        {
            case CpuIsa.Avx512: ForwardWork<T, Vector512Ops, Vector512<float>, TMask, TScore>.Run(jobs, mods, maxDegreeOfParallelism); break;
            case CpuIsa.Avx2: ForwardWork<T, Vector256Ops, Vector256<float>, TMask, TScore>.Run(jobs, mods, maxDegreeOfParallelism); break;
            default: ForwardWork<T, Vector128Ops, Vector128<float>, TMask, TScore>.Run(jobs, mods, maxDegreeOfParallelism); break;
        }
    }
}

/// <summary>
/// One call's tasks for the worker pool, for one job or several: each job's tile-kernel row tiles (after float copies of
/// its K and V where they pay, <see cref="KeyValueWidening"/>) or its decode key splits, and then the decode merges.
/// One instance per calling thread, nesting depth and specialisation, reused call after call (no per-call garbage).
/// </summary>
internal sealed unsafe class ForwardWork<T, TOps, TVec, TMask, TScore> : PoolWork
    where T : unmanaged where TOps : struct, IVectorOps<TVec> where TVec : struct
    where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    private enum Phase { Widen, Quantize, Tasks, Merges }

    /// <summary>How one job runs: its decode splits (Count 0: the tile kernel), partials slots and K/V copies.</summary>
    private struct Plan
    {
        public CpuAttentionJob<T> Job;
        public DecodeSplits Splits;
        public long FirstSlot;    // first DecodePartials slot (jobs share one buffer)
        public long WideAt;       // where its K/V copies start in the call's copy block, in floats
        public long QuantizedAt;  // where its int8-score keys start in the call's quantisation block, in bytes
        public bool WideKeys, WideValues;
    }

    private FlexMods<TMask, TScore> _mods;
    private Phase _phase;
    private DecodePartials? _partials;
    private Plan[] _plans = [];
    // Per job its first task of each phase, then the phase's total (binary-searched by JobOf).
    private long[] _firstWiden = [], _firstQuantize = [], _firstTask = [], _firstMerge = [];
    private int _count;

    private static int TileRows => FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TileRows;

    public static void Run(ReadOnlySpan<CpuAttentionJob<T>> jobs, in FlexMods<TMask, TScore> mods, int maxDegreeOfParallelism)
    {
        var work = NestedPerThread<ForwardWork<T, TOps, TVec, TMask, TScore>>.Current;
        if (work._plans.Length < jobs.Length)
        {
            work._plans = new Plan[jobs.Length];
            work._firstWiden = new long[jobs.Length + 1];
            work._firstQuantize = new long[jobs.Length + 1];
            work._firstTask = new long[jobs.Length + 1];
            work._firstMerge = new long[jobs.Length + 1];
        }
        int c = TOps.Count, dvPad = (jobs[0].ValueDim + c - 1) / c * c, maxRows = 1;
        double flops = 0, mergeFlops = 0;
        long widens = 0, quantizations = 0, tasks = 0, merges = 0, slots = 0, wideFloats = 0, quantizedBytes = 0;
        for (int n = 0; n < jobs.Length; n++)
        {
            ref var plan = ref work._plans[n];
            var job = jobs[n];
            if (TileGrouping.Override != 0) job = job with { TileGrouping = TileGrouping.Override };
            if (KeyValuePrefetch.Override != 0) job = job with { Prefetch = KeyValuePrefetch.Override };
            plan = new Plan { Job = job };
            work._firstWiden[n] = widens;
            work._firstQuantize[n] = quantizations;
            work._firstTask[n] = tasks;
            work._firstMerge[n] = merges;
            flops += WorkEstimate.Forward(job);
            int heads = job.Batch * job.KvHeads;
            DecodeKernel<T, TOps, TVec, TMask, TScore>.ThrowIfPagesUnsupported(job);
            if (DecodeKernel<T, TOps, TVec, TMask, TScore>.Applies(job))
            {
                plan.Splits = DecodeKernel<T, TOps, TVec, TMask, TScore>.Splits(job);
                plan.FirstSlot = slots;
                tasks += (long)heads * plan.Splits.Count;
                if (plan.Splits.Count > 1)
                {
                    slots += (long)heads * plan.Splits.Count;
                    merges += heads;
                    mergeFlops += WorkEstimate.Merge(job, plan.Splits.Count);
                    maxRows = Math.Max(maxRows, job.RowsPerKvHead);
                }
                continue;
            }
            tasks += FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TaskCount(job);
            if (job.Int8Scores.IsRequested)
            {
                // Int8 scores: the keys are smoothed and quantised once, a block per task, before any row tile runs.
                plan.QuantizedAt = quantizedBytes;
                quantizedBytes += Int8ScoreKeys.Bytes(job);
                quantizations += (long)heads * Int8ScoreKeys.BlockCount(job.KeyLength);
            }
            // Float copies of K and V where they pay, within one budget for the whole call.
            if (KeyValueWidening.Pays(job, TileRows, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.KeyBlock, dvPad, c, mods.Kinds != null,
                    out bool keys, out bool values)
                && wideFloats * sizeof(float) + KeyValueWidening.Bytes(job, dvPad, keys, values) <= KeyValueWidening.MaxBytes)
            {
                (plan.WideKeys, plan.WideValues, plan.WideAt) = (keys, values, wideFloats);
                wideFloats += KeyValueWidening.Bytes(job, dvPad, keys, values) / sizeof(float);
                widens += heads;
            }
        }
        (work._firstWiden[jobs.Length], work._firstQuantize[jobs.Length], work._firstTask[jobs.Length], work._firstMerge[jobs.Length]) =
            (widens, quantizations, tasks, merges);
        work._count = jobs.Length;
        work._mods = mods;
        AlignedMemoryHandle? quantized = null;
        KeyValueCopies? copies = null;
        try
        {
            if (slots > 0) work._partials = DecodePartials.For(slots, maxRows, dvPad);
            if (widens > 0)
            {
                copies = NestedPerThread<KeyValueCopies>.Current;
                float* wide = copies.Floats(wideFloats);
                for (int n = 0; n < jobs.Length; n++)
                {
                    ref var plan = ref work._plans[n];
                    if (plan.WideKeys || plan.WideValues)
                        plan.Job = KeyValueWidening.WithCopies(plan.Job, wide + plan.WideAt, dvPad, plan.WideKeys, plan.WideValues);
                }
                work.RunPhase(Phase.Widen, widens, maxDegreeOfParallelism, 8.0 * wideFloats);
            }
            if (quantizations > 0)
            {
                quantized = AlignedMemoryHandle.Allocate((nuint)quantizedBytes);
                byte* memory = (byte*)quantized.DangerousGetHandle();
                for (int n = 0; n < jobs.Length; n++)
                {
                    ref var plan = ref work._plans[n];
                    if (plan.Job.Int8Scores.IsRequested)
                        plan.Job = plan.Job with { Int8Scores = Int8ScoreKeys.Bind(plan.Job, memory + plan.QuantizedAt) };
                }
                work.RunPhase(Phase.Quantize, quantizations, maxDegreeOfParallelism, 8.0 * quantizedBytes);
            }
            work.RunPhase(Phase.Tasks, tasks, maxDegreeOfParallelism, flops);
            if (merges > 0) work.RunPhase(Phase.Merges, merges, maxDegreeOfParallelism, mergeFlops);
        }
        finally
        {
            // Pointers into the caller's (now unpinned) memory and the copies must not outlive the call.
            Array.Clear(work._plans, 0, jobs.Length);
            work._count = 0;
            work._mods = default;
            work._partials = null;
            copies?.Trim();
            quantized?.Dispose();
        }
    }

    private void RunPhase(Phase phase, long tasks, int maxDegreeOfParallelism, double flops)
    {
        _phase = phase;
        CpuWorkerPool.Shared.Run(this, checked((int)tasks), maxDegreeOfParallelism, flops);
    }

    protected override void RunTask(int task)
    {
        switch (_phase)
        {
            case Phase.Widen:
            {
                int n = JobOf(_firstWiden, task);
                KeyValueWidening.WidenHead(_plans[n].Job, (int)(task - _firstWiden[n]));
                break;
            }
            case Phase.Quantize:
            {
                int n = JobOf(_firstQuantize, task);
                ref readonly var job = ref _plans[n].Job;
                int c = TOps.Count;
                var scratch = CpuTileScratch.For(TileRows, FlashForwardKernel<T, TOps, TVec, TMask, TScore>.KeyBlock, job.HeadDim, (job.ValueDim + c - 1) / c * c);
                Int8ScoreKeys.QuantizeBlock(job, (int)(task - _firstQuantize[n]), scratch);
                break;
            }
            case Phase.Tasks:
            {
                int n = JobOf(_firstTask, task);
                ref readonly var plan = ref _plans[n];
                int local = (int)(task - _firstTask[n]);
                if (plan.Splits.Count == 0) FlashForwardKernel<T, TOps, TVec, TMask, TScore>.RunTask(plan.Job, local, _mods);
                else DecodeKernel<T, TOps, TVec, TMask, TScore>.RunSplit(plan.Job, plan.Splits, local, _partials, _mods, plan.FirstSlot);
                break;
            }
            default:
            {
                int n = JobOf(_firstMerge, task);
                ref readonly var plan = ref _plans[n];
                DecodeKernel<T, TOps, TVec, TMask, TScore>.Merge(plan.Job, plan.Splits, (int)(task - _firstMerge[n]), _partials!, plan.FirstSlot);
                break;
            }
        }
    }

    /// <summary>
    /// The job whose range of a phase's tasks holds <paramref name="task"/>: the last job whose first task is at most
    /// <paramref name="task"/> (jobs with no tasks in the phase share their successor's first task and are passed over).
    /// </summary>
    private int JobOf(long[] first, int task)
    {
        int lo = 0, hi = _count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (first[mid] <= task) lo = mid; else hi = mid - 1;
        }
        return lo;
    }
}
