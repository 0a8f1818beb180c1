namespace AttentionEngine.Bench.Performance;

/// <summary>Q, K, V (standard normal, fixed seeds) and an output for one performance case, [B, H, S, D] contiguous.</summary>
internal sealed class CaseTensors<T> : IDisposable where T : unmanaged
{
    private CaseTensors(NativeTensor<T> q, NativeTensor<T> k, NativeTensor<T> v, NativeTensor<T> output)
    {
        Q = q; K = k; V = v; Output = output;
    }

    public NativeTensor<T> Q { get; }
    public NativeTensor<T> K { get; }
    public NativeTensor<T> V { get; }
    public NativeTensor<T> Output { get; }

    public static CaseTensors<T> Create(PerformanceCase c) => new(
        TensorRandom.Create<T>(1, ValueDistribution.Normal, c.Batch, c.Heads, c.QueryLength, c.HeadDim),
        TensorRandom.Create<T>(2, ValueDistribution.Normal, c.Batch, c.KvHeads, c.KeyLength, c.HeadDim),
        TensorRandom.Create<T>(3, ValueDistribution.Normal, c.Batch, c.KvHeads, c.KeyLength, c.HeadDim),
        NativeTensor<T>.Zeros(c.Batch, c.Heads, c.QueryLength, c.HeadDim));

    public void Dispose()
    {
        Q.Dispose(); K.Dispose(); V.Dispose(); Output.Dispose();
    }
}
