using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// The online-softmax step of the decode kernel, one row at a time with keys along the lanes (the tile kernel's
/// <see cref="OnlineSoftmax{TOps, TVec}"/> puts rows along the lanes instead). Same arithmetic: p = 2^((s − m')·log2 e),
/// with −infinity − (−infinity) kept out by subtracting 0 while a row has seen no visible key.
/// </summary>
internal static unsafe class DecodeSoftmax<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    private const float Log2E = 1.4426950408889634f;

    /// <summary>
    /// Turns one row's scores into probabilities in place and updates its max and sum. Entries from keyCount up to
    /// the next whole vector must be −infinity (they come out as probability 0).
    /// </summary>
    /// <returns>The factor the row's output accumulators must be rescaled by.</returns>
    public static float Update(float* scores, int keyCount, ref float rowMax, ref float rowSum)
    {
        float blockMax = BlockMax(scores, keyCount);
        float newMax = MathF.Max(rowMax, blockMax);
        float subtract = float.IsNegativeInfinity(newMax) ? 0 : newMax;
        TVec log2E = TOps.Broadcast(Log2E), shift = TOps.Broadcast(subtract);
        for (int j = 0; j < keyCount; j += TOps.Count)
            TOps.Store(scores + j, TOps.Exp2(TOps.Multiply(TOps.Subtract(TOps.Load(scores + j), shift), log2E)));
        float rescale = Exp2Scalar((rowMax - subtract) * Log2E);
        // The sum is accumulated exactly as the output is (rescale, then key by key in order), so with V = 1 the
        // output O / l is exactly 1, and in general O and l carry the same rounding pattern.
        float sum = rowSum * rescale;
        for (int j = 0; j < keyCount; j++) sum += scores[j];
        rowSum = sum;
        rowMax = newMax;
        return rescale;
    }

    /// <summary>
    /// The largest score, in vectors (the padding up to the next whole vector is −infinity): a scalar IEEE max per key
    /// was a serial chain about as long as the row's dot products with a block of keys. The native max may pass over a
    /// NaN score, whose probability 2^(NaN) then makes the row's sum and output NaN all the same.
    /// </summary>
    private static float BlockMax(float* scores, int keyCount)
    {
        TVec max = TOps.Broadcast(float.NegativeInfinity);
        for (int j = 0; j < keyCount; j += TOps.Count) max = TOps.MaxNative(TOps.Load(scores + j), max);
        float* lanes = stackalloc float[TOps.Count];
        TOps.Store(lanes, max);
        float result = lanes[0];
        for (int n = 1; n < TOps.Count; n++) result = MathF.Max(result, lanes[n]);
        return result;
    }

    /// <summary>Final probabilities of a recomputed row: p = 2^((s − m)·log2 e) / l, and 0 on a row with no visible key.</summary>
    public static void Normalize(float* scores, int keyCount, float rowMax, float rowSum)
    {
        float subtract = float.IsNegativeInfinity(rowMax) ? 0 : rowMax;
        TVec inverse = TOps.Broadcast(rowSum == 0 ? 0 : 1 / rowSum);
        TVec log2E = TOps.Broadcast(Log2E), shift = TOps.Broadcast(subtract);
        for (int j = 0; j < keyCount; j += TOps.Count)
            TOps.Store(scores + j, TOps.Multiply(TOps.Exp2(TOps.Multiply(TOps.Subtract(TOps.Load(scores + j), shift), log2E)), inverse));
    }

    /// <summary>2^x through the same polynomial as the vectors, so a rescale rounds like the probabilities it scales.</summary>
    private static float Exp2Scalar(float x)
    {
        float* lanes = stackalloc float[TOps.Count];
        TOps.Store(lanes, TOps.Exp2(TOps.Broadcast(x)));
        return lanes[0];
    }
}
