using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// The online-softmax step for one block (FlashAttention-2): m' = max(m, max_j s), rescale = e^(m − m'),
/// p = e^(s − m'), l' = l · rescale + Σ_j p, with e^x computed as 2^(x · log2 e). Only the difference s − m' is
/// scaled by log2 e, so its rounding is relative to the (small) difference, not to the scores' magnitude. Rows run along vector lanes, so every reduction is a vertical vector
/// operation in a fixed order (ascending key), which makes results independent of threads and repeat calls.
/// </summary>
internal static unsafe class OnlineSoftmax<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    private const float Log2E = 1.4426950408889634f;

    /// <summary>Turns scores into probabilities in place and updates the row state.</summary>
    /// <remarks>
    /// Fully optimised from the first call, as the GEMM micro-kernels are: its first-tier code called Exp2 and every
    /// vector operation out of line, and a profile of B128 H8 N64 D64 still found 4% of its samples there.
    /// </remarks>
    /// <param name="rows">0 for all <paramref name="br"/> rows (the scores' pitch); else the first rows only, a multiple of Count.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Update(float* scores, int br, int keyCount, float* rowMax, float* rowSum, float* rowRescale, int rows = 0)
    {
        int c = TOps.Count, end = rows == 0 ? br : rows;
        TVec negativeInfinity = TOps.Broadcast(float.NegativeInfinity);
        TVec log2E = TOps.Broadcast(Log2E);
        for (int v = 0; v < end; v += c)
        {
            TVec blockMax = negativeInfinity;
            // The native max (one instruction, where the IEEE one is a nine-instruction chain per key): a NaN score may be
            // passed over here, but its probability 2^(NaN) is NaN, so the row's sum and output are NaN all the same.
            for (int j = 0; j < keyCount; j++) blockMax = TOps.MaxNative(TOps.Load(scores + j * br + v), blockMax);
            TVec oldMax = TOps.Load(rowMax + v);
            TVec newMax = TOps.Max(oldMax, blockMax);
            // A row that has seen no visible key yet has max -infinity; subtracting 0 instead keeps
            // 2^(-inf - (-inf)) = NaN out: its probabilities and rescale factor come out as exactly 0.
            TVec subtract = TOps.ReplaceNegativeInfinity(newMax, TOps.Zero);
            TVec rescale = TOps.Exp2(TOps.Multiply(TOps.Subtract(oldMax, subtract), log2E));
            TVec sum = TOps.Zero;
            for (int j = 0; j < keyCount; j++)
            {
                float* s = scores + j * br + v;
                TVec p = TOps.Exp2(TOps.Multiply(TOps.Subtract(TOps.Load(s), subtract), log2E));
                TOps.Store(s, p);
                sum = TOps.Add(sum, p);
            }
            TOps.Store(rowSum + v, TOps.MultiplyAdd(TOps.Load(rowSum + v), rescale, sum));
            TOps.Store(rowMax + v, newMax);
            TOps.Store(rowRescale + v, rescale);
        }
    }

    /// <summary>Final probabilities of a recomputed score block: p = 2^(s − m) / l (0 on rows with no visible key).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Normalize(float* scores, int br, int keyCount, float* rowMax, float* rowSum)
    {
        int c = TOps.Count;
        TVec log2E = TOps.Broadcast(Log2E);
        for (int v = 0; v < br; v += c)
        {
            TVec subtract = TOps.ReplaceNegativeInfinity(TOps.Load(rowMax + v), TOps.Zero);
            TVec inverse = SafeReciprocal(rowSum + v);
            for (int j = 0; j < keyCount; j++)
            {
                float* s = scores + j * br + v;
                TOps.Store(s, TOps.Multiply(TOps.Exp2(TOps.Multiply(TOps.Subtract(TOps.Load(s), subtract), log2E)), inverse));
            }
        }
    }

    /// <summary>1/l per lane, and 0 where l = 0: 1/0 = infinity would turn an empty row's zeros into NaN (0 · inf).</summary>
    private static TVec SafeReciprocal(float* sums)
    {
        float* lanes = stackalloc float[TOps.Count];
        for (int n = 0; n < TOps.Count; n++) lanes[n] = sums[n] == 0 ? 0 : 1 / sums[n];
        return TOps.Load(lanes);
    }
}
