namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// A call's floating-point work, for choosing how many threads it is worth (<see cref="CpuWorkerPool.MinFlopsPerThread"/>).
/// An upper bound is enough: it only has to tell tiny calls from ones that fill the cores, so masks are not counted.
/// </summary>
internal static class WorkEstimate
{
    /// <summary>Q·Kᵀ and P·V over every (query, key) pair: 2·(D + Dv) per pair.</summary>
    public static double Forward<T>(in CpuAttentionJob<T> job) where T : unmanaged =>
        2.0 * job.Batch * job.QueryHeads * job.QueryLength * (double)job.KeyLength * (job.HeadDim + job.ValueDim);

    /// <summary>The decode merge: every split's partial output of every row rescaled and added.</summary>
    public static double Merge<T>(in CpuAttentionJob<T> job, int splits) where T : unmanaged =>
        2.0 * job.Batch * job.QueryHeads * job.QueryLength * (double)splits * job.ValueDim;

    /// <summary>The backward recomputes S and P and forms dP, dS, dQ, dK and dV: about 2.5 forwards.</summary>
    public static double Backward<T>(in CpuAttentionJob<T> job) where T : unmanaged => 2.5 * Forward(job);
}
