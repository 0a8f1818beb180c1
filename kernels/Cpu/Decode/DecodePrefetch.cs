using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// Requests all of a key block's K and V cache lines at once, before the block is used. Decoding streams each byte
/// of K and V once, so it is bound by memory, and demand loads plus the hardware prefetcher keep too few misses in
/// flight. Measured on the 2-core Zen 4, B1 H32 Lk4096 D128: f32 19.0 → 23-25 GB/s; prefetching one or two blocks
/// further ahead measured no better.
/// Only for caches too large to stay in the last-level cache between calls (<see cref="Worthwhile"/>): on a 2-core
/// Sapphire Rapids, where a call's 4-32 MB of K and V stay resident, the burst of prefetches (a 64-key block is 64 KB
/// of f32 K and V, more than L1) took half the profile, and calls ran 1.3-1.5x faster without it (B1 H32 Lk128 and
/// Lk512 D128); at 128-256 MB (Lk32768 Hkv8) bf16 was 10-15% faster with it.
/// </summary>
internal static unsafe class DecodePrefetch
{
    /// <summary>K and V bytes of a call from which prefetching pays: above any last-level cache of 2-8 cores.</summary>
    public const long MinimumBytes = 64L << 20;

    /// <summary>Whether the call's K and V are large enough that they stream from memory on every call.</summary>
    public static bool Worthwhile<T>(in CpuAttentionJob<T> job) where T : unmanaged
    {
        long elementBytes = job.Int8.IsActive ? 1 : sizeof(T);
        return (long)job.Batch * job.KvHeads * job.KeyLength * (job.HeadDim + job.ValueDim) * elementBytes >= MinimumBytes;
    }

    public static void Block<T>(in CpuAttentionJob<T> job, int batch, int kvHead, long firstKey, int keyCount) where T : unmanaged
    {
        if (!Sse.IsSupported || keyCount <= 0) return;
        if (job.Int8.IsActive)
        {
            KeyValuePrefetch.Rows(job.Int8.K, batch, kvHead, (int)firstKey, keyCount, job.HeadDim);
            KeyValuePrefetch.Rows(job.Int8.V, batch, kvHead, (int)firstKey, keyCount, job.ValueDim);
            return;
        }
        KeyValuePrefetch.Rows(job.K, batch, kvHead, (int)firstKey, keyCount, job.HeadDim);
        KeyValuePrefetch.Rows(job.V, batch, kvHead, (int)firstKey, keyCount, job.ValueDim);
    }
}
