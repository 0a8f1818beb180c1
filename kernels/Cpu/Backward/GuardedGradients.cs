namespace AttentionEngine.Kernels.Cpu.Backward;

/// <summary>
/// The backward's guarded pass, taken only by a tile whose fast pass left a gradient non-finite. Hidden keys reach
/// the fast pass's gradients in two ways, each closed here: dS = P ∘ (dP − D) is 0 · NaN when a hidden key's V (and
/// so dP) or the score functor's derivative at its score is not finite, and dQ = dS·K is 0 · NaN when its K is not.
/// Rows that do see such a key get the raw elements back, so garbage in a visible position still propagates.
/// Rows that see none compute the same terms in the same order as the fast pass.
/// </summary>
internal static unsafe class GuardedGradients
{
    /// <summary>
    /// dS = 0 wherever P = 0 (a hidden pair), and P = dS = 0 on the tile's padding rows, whose zero queries score
    /// 0 · NaN against a non-finite key ([key][row] layouts).
    /// </summary>
    public static void ZeroWhereHidden(float* probabilities, float* scoreGradient, int br, int rowCount, int keyCount)
    {
        for (int j = 0; j < keyCount; j++)
        for (int r = 0; r < br; r++)
        {
            int n = j * br + r;
            if (r >= rowCount) probabilities[n] = 0;
            if (probabilities[n] == 0) scoreGradient[n] = 0;
        }
    }

    /// <summary>
    /// The key block for dQ = dS·K with non-finite elements zeroed (in the staged-keys scratch; the block itself when
    /// it has none), and per key in <see cref="CpuTileScratch.KeyFlags"/> whether it had any.
    /// </summary>
    public static float* FiniteKeys(float* keys, nint pitch, int keyCount, int d, int dPad, CpuTileScratch tile, out nint finitePitch)
    {
        bool any = false;
        for (int j = 0; j < keyCount; j++)
        {
            bool bad = !System.Numerics.Tensors.TensorPrimitives.IsFiniteAll(new ReadOnlySpan<float>(keys + j * pitch, d));
            tile.KeyFlags[j] = bad ? 1 : 0;
            any |= bad;
        }
        finitePitch = pitch;
        if (!any) return keys;
        NonFiniteRows.CopyFinite(keys, pitch, keyCount, d, tile.Keys, dPad);
        finitePitch = dPad;
        return tile.Keys;
    }

    /// <summary>dQ of rows that see (P ≠ 0) a key with non-finite elements gets dS · those raw elements.</summary>
    public static void AddBackVisibleKeys<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int br, int dPad,
        CpuTileScratch tile, BackwardScratch scratch) where T : unmanaged
    {
        for (int j = 0; j < keyCount; j++)
        {
            if (tile.KeyFlags[j] == 0) continue;
            for (int r = 0; r < rows.Count; r++)
            {
                if (tile.Scores[j * br + r] == 0) continue;
                float ds = scratch.ProbGrad[j * br + r];
                for (int c = 0; c < job.HeadDim; c++)
                {
                    float raw = NonFiniteRows.Element(job.K, batch, rows.KvHead, firstKey + j, c);
                    if (!float.IsFinite(raw)) scratch.QueryGrad[r * dPad + c] += ds * raw;
                }
            }
        }
    }
}
