using AttentionEngine.Kernels.Cpu.Simd;
using AttentionEngine.Kernels.Dropout;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Dropout in the CPU kernels (tile forward, decode, backward): the multipliers of one key block for the rows, drawn
/// from the call's <see cref="DropoutStream"/> into the tile scratch ([key][row], the score layout), and applied to a
/// probability block. The mask is recomputed wherever it is needed, never stored beyond one block.
/// </summary>
internal static unsafe class TileDropout<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>
    /// Each of the tile's br rows' counter words (query position and row stream; padding rows repeat row 0's), once per
    /// tile: the per-block draws then only read them.
    /// </summary>
    public static void PrepareRows<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int br, CpuTileScratch scratch) where T : unmanaged
    {
        for (int r = 0; r < br; r++)
        {
            int row = r < rows.Count ? r : 0;
            scratch.RowQuery[r] = rows.Query(row);
            scratch.RowStream[r] = DropoutStream.RowStream(batch, job.QueryHeads, rows.Head(row));
        }
    }

    /// <summary>The multipliers of keys [firstKey, firstKey + keyCount) for the prepared rows, into the tile's dropout scratch.</summary>
    public static void Draw<T>(in CpuAttentionJob<T> job, int firstKey, int keyCount, int br, CpuTileScratch scratch) where T : unmanaged =>
        DropoutTile.Multipliers(job.Dropout, scratch.RowQuery, scratch.RowStream, br, firstKey, keyCount, scratch.Dropout, br);

    /// <summary>P ← P ∘ M for a [keyCount][br] probability block of the prepared rows, drawing M on the way.</summary>
    public static void DrawAndApply<T>(in CpuAttentionJob<T> job, int firstKey, int keyCount, int br, float* probabilities, CpuTileScratch scratch)
        where T : unmanaged =>
        DropoutTile.Apply(job.Dropout, scratch.RowQuery, scratch.RowStream, br, firstKey, keyCount, probabilities, br);

    /// <summary>P ← P ∘ M over a [keyCount][br] block with M already drawn.</summary>
    public static void Apply(float* probabilities, float* multipliers, int br, int keyCount)
    {
        int c = TOps.Count;
        for (int n = 0; n < keyCount * br; n += c)
            TOps.Store(probabilities + n, TOps.Multiply(TOps.Load(probabilities + n), TOps.Load(multipliers + n)));
    }
}
