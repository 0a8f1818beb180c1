
namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Scales one transposed score block Sᵀ[j][r] and applies the masks: the bias is added, then hidden entries become
/// -infinity, overwriting whatever the score holds (a NaN from a hidden key's K or a NaN bias at a hidden pair never
/// survives). Scores stay in natural units here, rounded exactly as the textbook formula rounds them (one rounding for
/// the scale, one for the bias) and saturated to the float range (<see cref="ScoreSaturation"/>); only the softmax's
/// small differences s − m are converted to log2 units. The positional band runs only on blocks the band cuts
/// (FlashAttention's "masking steps"); keep-mask and bias are data and apply to every visited block.
/// </summary>
internal static unsafe class BlockMasking
{
    /// <summary>s · scale, once per score, saturated to the float range (an overflow is never ±infinity).</summary>
    public static void Scale<TOps, TVec>(float* scores, int count, float scale)
        where TOps : struct, Simd.IVectorOps<TVec> where TVec : struct
    {
        TVec factor = TOps.Broadcast(scale);
        for (int n = 0; n < count; n += TOps.Count)
            TOps.Store(scores + n, TOps.Saturate(TOps.Multiply(TOps.Load(scores + n), factor)));
    }

    /// <summary>Hides, for each key, the rows outside the band: the visible rows of key j form one contiguous range.</summary>
    public static void ApplyBand(float* scores, ScoreLayout layout, int firstKey, int keyCount, in TileRows rows, DiagonalBand band)
    {
        for (int j = 0; j < keyCount; j++)
        {
            long key = firstKey + j;
            // Query i sees key j when Lo <= j - i <= Hi, that is key - Hi <= i <= key - Lo (unclamped here: the row
            // helpers clamp to the tile).
            int begin = rows.FirstRowAtOrAfter(key - band.Hi);
            int end = rows.EndRowAtOrBefore(key - band.Lo);
            Hide(scores, layout, j, 0, Math.Min(begin, rows.Count));
            Hide(scores, layout, j, Math.Max(end, begin), rows.Count);
        }
    }

    /// <summary>
    /// Rows [from, to) of key j to −infinity: a contiguous run in the tile's [key][row] layout, filled by vectors (one
    /// store per element was 7% of B128 H8 N64 D64 causal, whose every block is a diagonal).
    /// </summary>
    private static void Hide(float* scores, ScoreLayout layout, int j, int from, int to)
    {
        if (to <= from) return;
        if (layout.RowStride == 1) new Span<float>(scores + layout[from, j], to - from).Fill(float.NegativeInfinity);
        else
            for (int r = from; r < to; r++) scores[layout[r, j]] = float.NegativeInfinity;
    }

    public static void ApplyKeepMask<T>(float* scores, ScoreLayout layout, int firstKey, int keyCount, in TileRows rows, in CpuAttentionJob<T> job, int batch)
        where T : unmanaged
    {
        var keep = job.KeepMask;
        for (int r = 0; r < rows.Count; r++)
        {
            bool* row = &keep.Base[keep.Offset(batch, rows.Head(r), rows.Query(r), firstKey)];
            for (int j = 0; j < keyCount; j++)
                if (!row[j * keep.Stride3]) scores[layout[r, j]] = float.NegativeInfinity;
        }
    }

    public static void ApplyBias<T>(float* scores, ScoreLayout layout, int firstKey, int keyCount, in TileRows rows, in CpuAttentionJob<T> job, int batch)
        where T : unmanaged
    {
        var bias = job.Bias;
        for (int r = 0; r < rows.Count; r++)
        {
            float* row = &bias.Base[bias.Offset(batch, rows.Head(r), rows.Query(r), firstKey)];
            // A -infinity bias hides its key like the keep-mask does, even when the score is NaN (a hidden key's K).
            for (int j = 0; j < keyCount; j++)
            {
                ref float s = ref scores[layout[r, j]];
                s = ScoreSaturation.AddBias(s, row[j * bias.Stride3]);
            }
        }
    }
}
