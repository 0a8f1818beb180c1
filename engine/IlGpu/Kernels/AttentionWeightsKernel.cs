using ILGPU;
using ILGPU.Algorithms;

namespace AttentionEngine.Kernels.IlGpu;

/// <summary>
/// The attention weights softmax(scores) for inspection, after the forward: one thread per (b, h, i, j) recomputes the
/// pair's score with the same <see cref="PairRules"/> and normalises it with the row's maximum and sum (not the LSE:
/// see <see cref="IlGpuAttentionParams{TStorage}.RowMax"/>). Written to a contiguous
/// [B, Hq, Lq, Lk] float buffer.
/// </summary>
internal static class AttentionWeightsKernel
{
    public static void Run<TStorage, TCodec, TMask, TScore>(Index1D index, IlGpuAttentionParams<TStorage> p, TMask mask, TScore scoreMod,
        ArrayView<float> weights)
        where TStorage : unmanaged where TCodec : struct, IElementCodec<TStorage>
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        var codec = default(TCodec);
        long n = index;
        int j = (int)(n % p.KeyLength);
        long row = n / p.KeyLength;
        int i = (int)(row % p.QueryLength);
        int bh = (int)(row / p.QueryLength), b = bh / p.QueryHeads, h = bh % p.QueryHeads, kvh = h / p.GroupSize;

        float rowMax = p.RowMax[row], rowSum = p.RowSum[row];
        float weight = 0f;
        if (rowSum != 0f && PairRules.Visible(p, mask, b, h, i, j))
        {
            long qBase = row * p.HeadDim, kBase = (((long)b * p.KvHeads + kvh) * p.KeyLength + j) * p.HeadDim;
            float dot = 0f;
            for (int c = 0; c < p.HeadDim; c++) dot += codec.Load(p.Q[qBase + c]) * codec.Load(p.K[kBase + c]);
            float score = PairRules.Score(p, scoreMod, dot, b, h, i, j);
            weight = score == float.NegativeInfinity ? 0f : XMath.Exp(score - rowMax) / rowSum;
            if (p.DropoutInWeights != 0) weight *= p.DropoutFactor(b, h, i, j);
        }
        weights[n] = weight;
    }
}
