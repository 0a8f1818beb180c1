namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// A call's work in floating-point operations, for choosing how many threads it is worth (<see cref="CpuWorkerPool.MinFlopsPerThread"/>).
/// An upper bound is enough: it only has to tell tiny calls from ones that fill the cores, so masks are not counted.
/// </summary>
internal static class WorkEstimate
{
    /// <summary>
    /// Operations one byte of the call's tensors is worth: a small call's core reads its cache at about half its FMA
    /// rate in bytes. A decode does two operations per element it reads, so by operations alone a B1 H32 Lk128 D128
    /// decode (2 M) looked smaller than a B1 H4 N64 D64 prefill (4 M), while it takes longer and two threads run it faster.
    /// </summary>
    public const double OperationsPerByte = 2;

    /// <summary>Q·Kᵀ and P·V over every (query, key) pair, 2·(D + Dv) per pair, and Q, K, V and O read or written once.</summary>
    public static double Forward<T>(in CpuAttentionJob<T> job) where T : unmanaged
    {
        double queryRows = (double)job.Batch * job.QueryHeads * job.QueryLength, keyRows = (double)job.Batch * job.KvHeads * job.KeyLength;
        double bytes = (queryRows + keyRows) * (job.HeadDim + job.ValueDim) * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        return 2.0 * queryRows * job.KeyLength * (job.HeadDim + job.ValueDim) + OperationsPerByte * bytes;
    }

    /// <summary>The decode merge: every split's partial output of every row rescaled and added.</summary>
    public static double Merge<T>(in CpuAttentionJob<T> job, int splits) where T : unmanaged =>
        2.0 * job.Batch * job.QueryHeads * job.QueryLength * (double)splits * job.ValueDim;

    /// <summary>The backward recomputes S and P and forms dP, dS, dQ, dK and dV: about 2.5 forwards.</summary>
    public static double Backward<T>(in CpuAttentionJob<T> job) where T : unmanaged => 2.5 * Forward(job);
}
