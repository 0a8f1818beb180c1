using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Quantization;

namespace AttentionEngine.Kernels.Cpu.Int8Scores;

/// <summary>
/// Int8 scores of a row tile (<c>ScorePrecision.Int8</c>): the tile's queries quantised once per tile, then per key
/// block the integer GEMM, the masks as for float scores, and the rule that keeps hidden keys harmless: a row takes the
/// block's int8 scores only when none of them ended hidden (and the row is in range); the other rows take the block's
/// float scores. A block's quantisation depends on all its keys, so a row that cannot see one of them must not use it.
/// </summary>
internal static unsafe class Int8TileScores<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>
    /// Quantises the tile's rows (Qᵀ, [D][Br], in the scratch; padding rows are zero) into int16 pairs, with each
    /// row's factor (quantisation scale · softmax scale) and whether it is out of range. Lane by lane the operations
    /// of <see cref="Int8ScoreQuantizer.QuantizeRow"/>, so the integers are the oracle's.
    /// </summary>
    public static void PrepareRows(int br, int d, float scale, CpuTileScratch scratch)
    {
        int c = TOps.Count;
        float* qt = scratch.QueryT, max = scratch.RowInverse;
        for (int v = 0; v < br; v += c)
        {
            TVec m = TOps.Zero;
            for (int x = 0; x < d; x++) m = TOps.Max(m, TOps.Abs(TOps.Load(qt + x * br + v))); // NaN propagates: out of range
            TOps.Store(max + v, m);
        }
        int* unusable = (int*)scratch.RowUnusable;
        for (int r = 0; r < br; r++)
        {
            float rowMax = max[r], rowScale = rowMax / 127f;
            bool usable = Int8ScoreQuantizer.QueryUsable(rowMax, scale);
            unusable[r] = usable ? 0 : -1;
            scratch.RowFactor[r] = usable ? rowScale * scale : 0;
            max[r] = usable && rowMax > 0 ? 127f / rowMax : 0; // now the inverse
        }
        for (int x = 0; x < (d + 1) / 2; x++)
            for (int v = 0; v < br; v += c)
            {
                TVec even = TOps.Load(qt + 2 * x * br + v);
                TVec odd = 2 * x + 1 < d ? TOps.Load(qt + (2 * x + 1) * br + v) : TOps.Zero;
                TOps.Store((float*)(scratch.QueryPairs + x * br + v), TOps.QuantizePairs(even, odd, TOps.Load(max + v)));
            }
    }

    /// <summary>Int8 scores of one key block (one of the quantiser's blocks) into the score scratch, Sᵀ[j][r], before masks.</summary>
    public static void Compute(in Int8ScoreKeys keys, int batch, int kvHead, int firstKey, int keyCount, int br, int d, float scale,
        CpuTileScratch scratch)
    {
        // shift_r = scale · (q_r · mean): the smoothing taken out of the keys, added back so scores stay true scores.
        RowShifts(keys.Mean(batch, kvHead, firstKey / Int8ScoreQuantizer.KeyBlock), br, d, scale, scratch);
        Int8ScoreGemm<TOps, TVec>.Compute(keys.KeyRow(batch, kvHead, firstKey), keys.PaddedDim, keyCount, keys.KeyScales(batch, kvHead, firstKey),
            scratch.QueryPairs, br, keys.PaddedDim / 2, scratch.RowFactor, scratch.RowShift, scratch.Scores);
    }

    /// <summary>
    /// scale · (q_r · mean) for every row: one key's worth of the float score GEMM, with the even and odd channels in
    /// separate chains so that the FMAs overlap (one chain per vector would wait on each FMA's latency).
    /// </summary>
    private static void RowShifts(float* mean, int br, int d, float scale, CpuTileScratch scratch)
    {
        float* qt = scratch.QueryT;
        for (int v = 0; v < br; v += TOps.Count)
        {
            TVec even = TOps.Zero, odd = TOps.Zero;
            int x = 0;
            for (; x + 2 <= d; x += 2)
            {
                even = TOps.MultiplyAdd(TOps.Broadcast(mean[x]), TOps.Load(qt + x * br + v), even);
                odd = TOps.MultiplyAdd(TOps.Broadcast(mean[x + 1]), TOps.Load(qt + (x + 1) * br + v), odd);
            }
            if (x < d) even = TOps.MultiplyAdd(TOps.Broadcast(mean[x]), TOps.Load(qt + x * br + v), even);
            TOps.Store(scratch.RowShift + v, TOps.Multiply(TOps.Add(even, odd), TOps.Broadcast(scale)));
        }
    }

    /// <summary>
    /// After the masks: marks (in <see cref="CpuTileScratch.RowExact"/>) the rows that take float scores for this block,
    /// those out of range and those with a hidden key in it; true when there is any.
    /// </summary>
    public static bool RowsNeedingFloat(float* scores, int br, int keyCount, CpuTileScratch scratch)
    {
        bool any = false;
        for (int v = 0; v < br; v += TOps.Count)
        {
            TVec m = TOps.Load(scratch.RowUnusable + v);
            for (int j = 0; j < keyCount; j++) m = TOps.Or(m, TOps.NegativeInfinityMask(TOps.Load(scores + j * br + v)));
            TOps.Store(scratch.RowExact + v, m);
            any |= TOps.AnySet(m);
        }
        return any;
    }

    /// <summary>Copies the marked rows' float scores over their int8 ones.</summary>
    public static void TakeFloatRows(float* scores, float* floatScores, int br, int keyCount, CpuTileScratch scratch)
    {
        int* marked = (int*)scratch.RowExact;
        for (int r = 0; r < br; r++)
        {
            if (marked[r] == 0) continue;
            for (int j = 0; j < keyCount; j++) scores[j * br + r] = floatScores[j * br + r];
        }
    }
}
