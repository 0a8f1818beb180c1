namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Where the CPU kernels meet block masks and functors: the kind of a whole tile × key block (so empty ones are
/// skipped and full ones run with no mask arithmetic), the score functor on every visited score, and the mask
/// functor on the pairs of partial blocks. Written once for the tile kernel's and the decode kernel's score layouts.
/// </summary>
internal static unsafe class FlexMasking<TMask, TScore> where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    /// <summary>
    /// Empty when every block under the tile's (head, query) rectangle and the keys is empty, Full when every one is
    /// full, else Partial (resolved per pair by <see cref="ApplyMask"/>).
    /// </summary>
    public static BlockKind TileKind(in FlexMods<TMask, TScore> mods, int batch, in TileRows rows, int firstKey, int keyCount)
    {
        if (!mods.HasBlocks) return BlockKind.Full;
        int firstHead = rows.Head(0), lastHead = firstHead;
        for (int r = 1; r < Math.Min(rows.Count, rows.GroupSize); r++)
        {
            firstHead = Math.Min(firstHead, rows.Head(r));
            lastHead = Math.Max(lastHead, rows.Head(r));
        }
        if (mods.Grid.Heads == 1) lastHead = firstHead;
        bool allEmpty = true, allFull = true;
        for (int head = firstHead; head <= lastHead; head++)
        for (int qb = rows.FirstQuery / mods.Grid.QueryBlock; qb <= rows.LastQuery / mods.Grid.QueryBlock; qb++)
        for (int kb = firstKey / mods.Grid.KeyBlock; kb <= (firstKey + keyCount - 1) / mods.Grid.KeyBlock; kb++)
        {
            var kind = mods.KindAt(batch, head, qb * mods.Grid.QueryBlock, kb * mods.Grid.KeyBlock);
            allEmpty &= kind == BlockKind.Empty;
            allFull &= kind == BlockKind.Full;
        }
        return allEmpty ? BlockKind.Empty : allFull ? BlockKind.Full : BlockKind.Partial;
    }

    /// <summary>
    /// Everything after scaling, in the order the semantics define: score functor, bias, then the masks that hide
    /// pairs: positional band (only on blocks it cuts), block mask and mask functor (only in mixed tiles), keep-mask.
    /// The masks come last so that they overwrite: a hidden pair is -infinity whatever its score or bias held.
    /// </summary>
    public static void ScoreModsAndMasks<T>(float* scores, ScoreLayout layout, int firstKey, int keyCount, in TileRows rows,
        in CpuAttentionJob<T> job, int batch, in FlexMods<TMask, TScore> mods, BlockKind kind) where T : unmanaged
    {
        ApplyScoreMod(scores, layout, firstKey, keyCount, rows, batch, mods);
        if (!job.Bias.IsEmpty) BlockMasking.ApplyBias(scores, layout, firstKey, keyCount, rows, job, batch);
        var band = job.Band;
        bool blockFullyInBand = band.ContainsAll(rows.FirstQuery, rows.LastQuery, firstKey, firstKey + (long)keyCount - 1);
        if (!blockFullyInBand) BlockMasking.ApplyBand(scores, layout, firstKey, keyCount, rows, band);
        if (kind == BlockKind.Partial) ApplyMask(scores, layout, firstKey, keyCount, rows, batch, mods);
        if (!job.KeepMask.IsEmpty) BlockMasking.ApplyKeepMask(scores, layout, firstKey, keyCount, rows, job, batch);
    }

    /// <summary>score ← functor(score) on the block's valid rows and keys (scores are scaled, not yet biased).</summary>
    public static void ApplyScoreMod(float* scores, ScoreLayout layout, int firstKey, int keyCount, in TileRows rows, int batch,
        in FlexMods<TMask, TScore> mods)
    {
        if (FlexMods<TMask, TScore>.ScoreIsIdentity) return;
        var score = mods.Score;
        for (int r = 0; r < rows.Count; r++)
        {
            int head = rows.Head(r), query = rows.Query(r);
            for (int j = 0; j < keyCount; j++)
            {
                ref float s = ref scores[layout[r, j]];
                s = ScoreSaturation.SaturateFunctor(score.Apply(s, batch, head, query, firstKey + j));
            }
        }
    }

    /// <summary>
    /// In a mixed tile: per row and per run of keys in one mask block, hides the run when its block is empty, leaves it
    /// when full, and asks the mask functor pair by pair only when partial.
    /// </summary>
    public static void ApplyMask(float* scores, ScoreLayout layout, int firstKey, int keyCount, in TileRows rows, int batch,
        in FlexMods<TMask, TScore> mods)
    {
        var mask = mods.Mask;
        for (int r = 0; r < rows.Count; r++)
        {
            int head = rows.Head(r), query = rows.Query(r);
            for (int j = 0; j < keyCount;)
            {
                int key = firstKey + j;
                int runEnd = (int)Math.Min(keyCount, ((long)key / mods.Grid.KeyBlock + 1) * mods.Grid.KeyBlock - firstKey);
                switch (mods.KindAt(batch, head, query, key))
                {
                    case BlockKind.Empty:
                        for (; j < runEnd; j++) scores[layout[r, j]] = float.NegativeInfinity;
                        break;
                    case BlockKind.Partial:
                        for (; j < runEnd; j++)
                            if (!mask.Keep(batch, head, query, firstKey + j)) scores[layout[r, j]] = float.NegativeInfinity;
                        break;
                    default:
                        j = runEnd;
                        break;
                }
            }
        }
    }
}
