using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// Requesting K and V lines ahead (<see cref="KeyValuePrefetch"/>) changes no bit of any result, forward and decode,
/// over generated problems of every mask kind (block masks whose empty blocks no step reads), with hostile values, GQA,
/// strides, dropout and weights as the generator draws them. By size alone only calls of 64 MB of K and V request, which
/// the property suites never draw; here every call is made to, and the same call is made not to.
/// </summary>
public class KeyValuePrefetchTests
{
    private static readonly ProblemLimits Limits = new() { MaxLength = 300, MaxCost = 3e7 };

    [Fact] public void Requests_change_no_bit_f32() => Check<float>(40, 41);
    [Fact] public void Requests_change_no_bit_bf16() => Check<BFloat16>(25, 42);
    [Fact] public void Requests_change_no_bit_f16() => Check<Half>(25, 43);

    private static void Check<T>(int count, ulong seed) where T : unmanaged
    {
        foreach (var spec in AttentionGen.Sample(count, seed, Limits))
        {
            using var problem = AttentionProblem<T>.Create(spec);
            var without = Run(problem, 1);
            var with = Run(problem, 2);
            SameBits.Equal(without, with, spec.ToString());
        }
    }

    private static AttentionResult Run<T>(AttentionProblem<T> problem, int setting) where T : unmanaged
    {
        // Read when the call is planned, on this thread, and carried in the job to every worker.
        KeyValuePrefetch.Override = setting;
        try { return problem.Run(Attention.Using(Backend.Cpu)); }
        finally { KeyValuePrefetch.Override = 0; }
    }

    [Fact]
    public void Only_calls_whose_keys_and_values_leave_the_cache_request_by_size()
    {
        Assert.False(KeyValuePrefetch.Worthwhile(Job(batch: 1, kvHeads: 8, keys: 128, dim: 64)));
        Assert.True(KeyValuePrefetch.Worthwhile(Job(batch: 64, kvHeads: 8, keys: 128, dim: 128))); // 64 MB of f32 K and V
        Assert.True(KeyValuePrefetch.Worthwhile(Job(batch: 128, kvHeads: 8, keys: 64, dim: 64, queries: 64))); // 32 MB of K and V, 32 of Q and O
        Assert.False(KeyValuePrefetch.Worthwhile(Job(batch: 64, kvHeads: 8, keys: 64, dim: 64, queries: 64))); // 32 MB in all
        Assert.False(KeyValuePrefetch.Worthwhile(Job(batch: 64, kvHeads: 8, keys: 128, dim: 128) with { Prefetch = 1 }));
        Assert.True(KeyValuePrefetch.Worthwhile(Job(batch: 1, kvHeads: 8, keys: 128, dim: 64) with { Prefetch = 2 }));
    }

    private static CpuAttentionJob<float> Job(int batch, int kvHeads, int keys, int dim, int queries = 1) =>
        new()
        {
            Batch = batch, QueryHeads = kvHeads, KvHeads = kvHeads, QueryLength = queries, KeyLength = keys, HeadDim = dim, ValueDim = dim,
            Scale = 1, Band = default, Q = default, K = default, V = default, Output = default,
        };
}
