using System.Numerics.Tensors;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Backward;

/// <summary>
/// The FlashAttention-2 backward on the CPU, in two phases that each own what they write, so no float is ever summed
/// across threads and the result is bitwise the same for any thread count:
/// <list type="number">
/// <item>row tiles (as the forward's): recompute S and P = e^(S − LSE) per key block, dP = dO·Vᵀ,
/// dS = P ∘ (dP − D)·scale, and accumulate dQ = dS·K;</item>
/// <item>key tiles of <see cref="KeyBlock"/> keys: walk the row tiles that can see them, recompute P and dS the same
/// way, and accumulate dV = Pᵀ·dO and dK = dSᵀ·Q (GQA: over every query head of the group).</item>
/// </list>
/// Both reuse the forward's micro-kernels: <see cref="ScoreGemm{TOps, TVec}"/> for S and dP, <see cref="ValueGemm{TOps, TVec}"/>
/// for the three gradient products (P and dS transposed for phase 2). Nothing is O(Lq × Lk).
/// </summary>
internal static unsafe class BackwardKernel<T, TOps, TVec, TMask, TScore>
    where T : unmanaged where TOps : struct, IVectorOps<TVec> where TVec : struct where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    private const float Log2E = 1.4426950408889634f;

    /// <summary>Keys per tile (<see cref="CpuKeyBlock"/>).</summary>
    public const int KeyBlock = CpuKeyBlock.Keys;

    public static int TileRows => FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TileRows;

    private static int Padded(int n) => (n + TOps.Count - 1) / TOps.Count * TOps.Count;

    public static int QueryTaskCount(in CpuBackwardJob<T> job) =>
        FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TileCount(job.Forward);

    /// <summary>Key tiles of the call (the validator keeps this within int).</summary>
    public static int KeyTaskCount(in CpuBackwardJob<T> job) => checked(job.Forward.Batch * job.Forward.KvHeads * KeyTilesPerHead(job.Forward));

    /// <summary>Phase 1: dQ of one row tile.</summary>
    public static void RunQueryTile(in CpuBackwardJob<T> job, int task, in FlexMods<TMask, TScore> mods)
    {
        var f = job.Forward;
        var (batch, rows) = QueryTileAt(f, task);
        int dPad = Padded(f.HeadDim), dvPad = Padded(f.ValueDim);
        var tile = CpuTileScratch.For(TileRows, KeyBlock, dPad, dvPad);
        var scratch = BackwardScratch.For(TileRows, KeyBlock, dPad, dvPad);
        // A non-finite dQ sends the tile through the guarded pass (see ScoreGradients): hostile values only.
        if (!QueryTile(job, batch, rows, dPad, dvPad, tile, scratch, null, null, mods, guarded: false))
            QueryTile(job, batch, rows, dPad, dvPad, tile, scratch, null, null, mods, guarded: true);
    }

    /// <summary>Phase 2: dK and dV of one key tile.</summary>
    public static void RunKeyTile(in CpuBackwardJob<T> job, int task, in FlexMods<TMask, TScore> mods)
    {
        var f = job.Forward;
        int keyTiles = KeyTilesPerHead(f);
        int batch = (int)(task / ((long)f.KvHeads * keyTiles)), kvHead = task / keyTiles % f.KvHeads, firstKey = task % keyTiles * KeyBlock;
        if (!KeyTile(job, batch, kvHead, firstKey, mods, guarded: false))
            KeyTile(job, batch, kvHead, firstKey, mods, guarded: true);
    }

    /// <summary>
    /// The single-pass alternative for one (batch, KV head): row tiles in order, each loaded once, walking the key
    /// blocks its rows can see; dQ of the tile accumulates in order of keys, and dK/dV in a private [Lk] buffer in
    /// order of row tiles: the same terms in the same order as phases 1 and 2, so both ways give the same bits.
    /// S and dP are computed once per (row tile, key block) instead of twice.
    /// </summary>
    public static void RunHead(in CpuBackwardJob<T> job, int task, in FlexMods<TMask, TScore> mods)
    {
        if (!Head(job, task, mods, guarded: false)) Head(job, task, mods, guarded: true);
    }

    private static bool Head(in CpuBackwardJob<T> job, int task, in FlexMods<TMask, TScore> mods, bool guarded)
    {
        var f = job.Forward;
        int br = TileRows;
        int batch = task / f.KvHeads, kvHead = task % f.KvHeads;
        int dPad = Padded(f.HeadDim), dvPad = Padded(f.ValueDim);
        long keyRows = (f.KeyLength + (long)KeyBlock - 1) / KeyBlock * KeyBlock;
        var tile = CpuTileScratch.For(br, KeyBlock, dPad, dvPad);
        var scratch = BackwardScratch.For(br, KeyBlock, dPad, dvPad);
        float* keyGrad = scratch.HeadKeyValueGradient(keyRows * (dPad + dvPad));
        float* valueGrad = keyGrad + keyRows * dPad;
        for (long n = 0; n < keyRows * (dPad + dvPad); n += int.MaxValue / 2)
            new Span<float>(keyGrad + n, (int)Math.Min(int.MaxValue / 2, keyRows * (dPad + dvPad) - n)).Clear();
        bool finite = true;
        for (int firstRow = 0; firstRow < f.RowsPerKvHead; firstRow += br)
        {
            var rows = new TileRows(firstRow, Math.Min(br, f.RowsPerKvHead - firstRow), f.GroupSize, kvHead);
            finite &= QueryTile(job, batch, rows, dPad, dvPad, tile, scratch, keyGrad, valueGrad, mods, guarded);
            if (!finite && !guarded) return false;
            if (f.RowsPerKvHead - firstRow <= br) break; // the last tile (firstRow + br could pass int.MaxValue)
        }
        WriteKeyGradients(job, batch, kvHead, 0, f.KeyLength, keyGrad, valueGrad, dPad, dvPad);
        return guarded || AllFinite(keyGrad, keyRows * (dPad + dvPad));
    }

    /// <summary>Phase 0, only when some saved LSE is too coarse: the softmax max and 1 / sum of one row tile's coarse rows.</summary>
    public static void RunRowStatistics(in CpuBackwardJob<T> job, int task, in FlexMods<TMask, TScore> mods)
    {
        var f = job.Forward;
        var (batch, rows) = QueryTileAt(f, task);
        bool any = false;
        for (int r = 0; r < rows.Count && !any; r++) any = LsePrecision.IsCoarse(job.Lse[batch, rows.Head(r), rows.Query(r), 0]);
        if (!any) return;
        int br = TileRows, dPad = Padded(f.HeadDim), dvPad = Padded(f.ValueDim);
        var tile = CpuTileScratch.For(br, KeyBlock, dPad, dvPad);
        TileStaging.LoadQueriesTransposed(f, batch, rows, br, tile);
        new Span<float>(tile.RowMax, br).Fill(float.NegativeInfinity);
        new Span<float>(tile.RowSum, br).Clear();
        var (firstBlock, keyEnd) = rows.VisibleKeys(f.Band, f.KeyLength, KeyBlock);
        for (long firstKey = firstBlock; firstKey < keyEnd; firstKey += KeyBlock)
        {
            int keyCount = (int)Math.Min(KeyBlock, f.KeyLength - firstKey);
            var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, (int)firstKey, keyCount);
            if (kind == BlockKind.Empty) continue;
            MaskedScores(f, batch, rows, (int)firstKey, keyCount, dPad, tile, mods, kind, null, out _);
            OnlineSoftmax<TOps, TVec>.Update(tile.Scores, br, keyCount, tile.RowMax, tile.RowSum, tile.RowRescale);
        }
        for (int r = 0; r < rows.Count; r++)
        {
            float* statistics = job.RowStatistics + 2 * ((((long)batch * f.QueryHeads) + rows.Head(r)) * f.QueryLength + rows.Query(r));
            statistics[0] = tile.RowMax[r];
            statistics[1] = tile.RowSum[r] == 0 ? 0 : 1 / tile.RowSum[r];
        }
    }

    private static (int Batch, TileRows Rows) QueryTileAt(in CpuAttentionJob<T> f, int task)
    {
        int br = TileRows;
        int tilesPerHead = (int)((f.RowsPerKvHead + (long)br - 1) / br);
        int batch = (int)(task / ((long)f.KvHeads * tilesPerHead)), kvHead = task / tilesPerHead % f.KvHeads, firstRow = task % tilesPerHead * br;
        return (batch, new TileRows(firstRow, Math.Min(br, f.RowsPerKvHead - firstRow), f.GroupSize, kvHead));
    }

    private static int KeyTilesPerHead(in CpuAttentionJob<T> f) => (int)((f.KeyLength + (long)KeyBlock - 1) / KeyBlock);

    private static bool AllFinite(float* values, long count)
    {
        for (long n = 0; n < count; n += int.MaxValue / 2)
            if (!TensorPrimitives.IsFiniteAll(new ReadOnlySpan<float>(values + n, (int)Math.Min(int.MaxValue / 2, count - n)))) return false;
        return true;
    }

    /// <summary>
    /// One row tile against the key blocks its rows can see: dQ of the tile (written out), and with
    /// <paramref name="keyGrad"/> and <paramref name="valueGrad"/> ([Lk rounded to blocks][padded dims]) also the
    /// tile's terms of dK and dV. Returns whether the tile's dQ is finite.
    /// </summary>
    private static bool QueryTile(in CpuBackwardJob<T> job, int batch, in TileRows rows, int dPad, int dvPad,
        CpuTileScratch tile, BackwardScratch scratch, float* keyGrad, float* valueGrad, in FlexMods<TMask, TScore> mods, bool guarded)
    {
        var f = job.Forward;
        int br = TileRows, c = TOps.Count;
        BackwardStaging.LoadRows(job, batch, rows, br, dPad, dvPad, tile, scratch);
        if (f.Dropout.IsActive) TileDropout<TOps, TVec>.PrepareRows(f, batch, rows, br, tile);
        new Span<float>(scratch.QueryGrad, br * dPad).Clear();
        var byKey = new ScoreLayout(br, 1);
        var (firstBlock, keyEnd) = rows.VisibleKeys(f.Band, f.KeyLength, KeyBlock);
        for (long firstKey = firstBlock; firstKey < keyEnd; firstKey += KeyBlock)
        {
            int keyCount = (int)Math.Min(KeyBlock, f.KeyLength - firstKey);
            var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, (int)firstKey, keyCount);
            if (kind == BlockKind.Empty) continue; // a block mask's empty block: nothing to differentiate
            float* keys = ScoreGradients(job, batch, rows, (int)firstKey, keyCount, dPad, dvPad, tile, scratch, writeScoreGradient: true, mods, kind, guarded, out nint keyPitch);
            ValueGemm<TOps, TVec>.Accumulate(scratch.ProbGrad, br, keyCount, keys, keyPitch, dPad / c, scratch.QueryGrad, dPad, scratch.Ones);
            if (guarded) GuardedGradients.AddBackVisibleKeys(f, batch, rows, (int)firstKey, keyCount, br, dPad, tile, scratch);
            if (keyGrad == null) continue;
            if (f.Dropout.IsActive) TileDropout<TOps, TVec>.Apply(tile.Scores, tile.Dropout, br, keyCount);
            // dV = Pᵀ·dO and dK = dSᵀ·Q straight from the [key][row] blocks. Key rows past keyCount (last block only)
            // read stale scratch into buffer rows past Lk, which are never written out.
            ValueGemm<TOps, TVec>.Accumulate(tile.Scores, byKey, KeyBlock, br, scratch.OutputGrad, dvPad, dvPad / c,
                valueGrad + firstKey * dvPad, dvPad, scratch.Ones);
            ValueGemm<TOps, TVec>.Accumulate(scratch.ProbGrad, byKey, KeyBlock, br, scratch.QueryRows, dPad, dPad / c,
                keyGrad + firstKey * dPad, dPad, scratch.Ones);
        }
        var dq = job.DQ;
        for (int r = 0; r < rows.Count; r++)
            ElementConversion.FromSingle(scratch.QueryGrad + r * dPad, f.HeadDim, &dq.Base[dq.Offset(batch, rows.Head(r), rows.Query(r), 0)], dq.Stride3);
        return TensorPrimitives.IsFiniteAll(new ReadOnlySpan<float>(scratch.QueryGrad, rows.Count * dPad));
    }

    private static void WriteKeyGradients(in CpuBackwardJob<T> job, int batch, int kvHead, int firstKey, int keyCount,
        float* keyGrad, float* valueGrad, int dPad, int dvPad)
    {
        var f = job.Forward;
        var dk = job.DK;
        var dv = job.DV;
        for (int j = 0; j < keyCount; j++)
        {
            ElementConversion.FromSingle(keyGrad + (long)j * dPad, f.HeadDim, &dk.Base[dk.Offset(batch, kvHead, firstKey + j, 0)], dk.Stride3);
            ElementConversion.FromSingle(valueGrad + (long)j * dvPad, f.ValueDim, &dv.Base[dv.Offset(batch, kvHead, firstKey + j, 0)], dv.Stride3);
        }
    }

    /// <summary>dK and dV of one key tile, over the row tiles that can see it, in order; returns whether they are finite.</summary>
    private static bool KeyTile(in CpuBackwardJob<T> job, int batch, int kvHead, int firstKey, in FlexMods<TMask, TScore> mods, bool guarded)
    {
        var f = job.Forward;
        int br = TileRows, c = TOps.Count;
        int keyCount = Math.Min(KeyBlock, f.KeyLength - firstKey);
        int dPad = Padded(f.HeadDim), dvPad = Padded(f.ValueDim);
        var tile = CpuTileScratch.For(br, KeyBlock, dPad, dvPad);
        var scratch = BackwardScratch.For(br, KeyBlock, dPad, dvPad);
        new Span<float>(scratch.KeyGrad, KeyBlock * dPad).Clear();
        new Span<float>(scratch.ValueGrad, KeyBlock * dvPad).Clear();

        // The rows that can see any key of the tile.
        var band = f.Band;
        long firstQuery = band.FirstQuery(firstKey);
        long lastQuery = band.LastQuery(firstKey + keyCount - 1, f.QueryLength);
        if (firstQuery <= lastQuery)
        {
            long rowEnd = (lastQuery + 1) * f.GroupSize;
            for (long firstRow = firstQuery * f.GroupSize / br * br; firstRow < rowEnd; firstRow += br)
            {
                var rows = new TileRows((int)firstRow, (int)Math.Min(br, f.RowsPerKvHead - firstRow), f.GroupSize, kvHead);
                var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, firstKey, keyCount);
                if (kind == BlockKind.Empty) continue;
                BackwardStaging.LoadRows(job, batch, rows, br, dPad, dvPad, tile, scratch);
                if (f.Dropout.IsActive) TileDropout<TOps, TVec>.PrepareRows(f, batch, rows, br, tile);
        if (f.Dropout.IsActive) TileDropout<TOps, TVec>.PrepareRows(f, batch, rows, br, tile);
                ScoreGradients(job, batch, rows, firstKey, keyCount, dPad, dvPad, tile, scratch, writeScoreGradient: false, mods, kind, guarded, out _);
                if (f.Dropout.IsActive) TileDropout<TOps, TVec>.Apply(tile.Scores, tile.Dropout, br, keyCount);
                // dV = Pᵀ·dO and dK = dSᵀ·Q read the [key][row] blocks directly: output row = key, summed over rows.
                // Key rows past keyCount read stale scratch and are never written out.
                var byKey = new ScoreLayout(br, 1);
                ValueGemm<TOps, TVec>.Accumulate(tile.Scores, byKey, KeyBlock, br, scratch.OutputGrad, dvPad, dvPad / c, scratch.ValueGrad, dvPad, scratch.Ones);
                ValueGemm<TOps, TVec>.Accumulate(scratch.ProbGrad, byKey, KeyBlock, br, scratch.QueryRows, dPad, dPad / c, scratch.KeyGrad, dPad, scratch.Ones);
            }
        }
        WriteKeyGradients(job, batch, kvHead, firstKey, keyCount, scratch.KeyGrad, scratch.ValueGrad, dPad, dvPad);
        return TensorPrimitives.IsFiniteAll(new ReadOnlySpan<float>(scratch.KeyGrad, keyCount * dPad))
            && TensorPrimitives.IsFiniteAll(new ReadOnlySpan<float>(scratch.ValueGrad, keyCount * dvPad));
    }

    /// <summary>
    /// P (in the tile's score scratch, before dropout: callers apply the block's multipliers, left in the tile's
    /// dropout scratch, before dV = Pᵀ·dO) and dS·scale (in ProbGrad) of one key block, both as [key][row]; returns the
    /// key block's rows (padded to dPad) for dQ = dS·K. The guarded pass (a tile whose fast pass left a gradient
    /// non-finite) sets dS to 0 wherever P is 0, so a hidden key's NaN or infinite V (through dP) or score functor
    /// derivative never reaches a gradient, and hands back K with its non-finite elements zeroed (the rows that do see
    /// such a key get them back in <see cref="GuardedGradients.AddBackVisibleKeys"/>).
    /// </summary>
    private static float* ScoreGradients(in CpuBackwardJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int dPad, int dvPad,
        CpuTileScratch tile, BackwardScratch scratch, bool writeScoreGradient, in FlexMods<TMask, TScore> mods, BlockKind kind, bool guarded,
        out nint keyPitch)
    {
        var f = job.Forward;
        int br = TileRows, c = TOps.Count;
        bool chain = !FlexMods<TMask, TScore>.ScoreIsIdentity;
        float* keys = MaskedScores(f, batch, rows, firstKey, keyCount, dPad, tile, mods, kind, chain ? scratch.ScoreRaw : null, out keyPitch);
        float* values = TileStaging.Values(f, batch, rows.KvHead, firstKey, keyCount, dvPad, c, tile, out nint valuePitch);
        ScoreGemm<TOps, TVec>.Compute(values, valuePitch, keyCount, scratch.OutputGradT, br, f.ValueDim, scratch.ProbGrad);

        // With dropout, O = (P ∘ M)·V: the gradient reaching P is dP ∘ M, and D = rowsum(dO ∘ O) already holds the mask.
        bool drop = f.Dropout.IsActive;
        if (drop)
        {
            TileDropout<TOps, TVec>.Draw(f, firstKey, keyCount, br, tile);
            // A dropped key's V never counts: 0 · NaN from a garbage V would otherwise reach dS.
            if (guarded)
                for (int n = 0; n < keyCount * br; n++)
                    if (tile.Dropout[n] == 0) scratch.ProbGrad[n] = 0;
        }
        TVec log2E = TOps.Broadcast(Log2E), scale = TOps.Broadcast(f.Scale);
        for (int v = 0; v < br; v += c)
        {
            TVec lse = TOps.Load(scratch.RowLse + v), rowD = TOps.Load(scratch.RowD + v), norm = TOps.Load(scratch.RowNorm + v);
            for (int j = 0; j < keyCount; j++)
            {
                float* s = tile.Scores + j * br + v;
                float* dp = scratch.ProbGrad + j * br + v;
                // norm is 1 unless the row's LSE was too coarse (then LSE is the recomputed max and norm 1 / sum).
                TVec p = TOps.Multiply(TOps.Exp2(TOps.Multiply(TOps.Subtract(TOps.Load(s), lse), log2E)), norm);
                TOps.Store(s, p);
                TVec gradient = drop ? TOps.Multiply(TOps.Load(dp), TOps.Load(tile.Dropout + j * br + v)) : TOps.Load(dp);
                TOps.Store(dp, TOps.Multiply(p, TOps.Subtract(gradient, rowD)));
            }
        }
        if (guarded) GuardedGradients.ZeroWhereHidden(tile.Scores, scratch.ProbGrad, br, rows.Count, keyCount);
        // dP now holds the raw score gradient P ∘ (dP − D): the bias gradient takes it as is, dQ and dK want it scaled.
        if (writeScoreGradient && !job.ScoreGradient.IsEmpty) WriteScoreGradient(job, batch, rows, firstKey, keyCount, scratch.ProbGrad);
        if (chain)
        {
            ChainThroughScoreMod(batch, rows, firstKey, keyCount, scratch, mods);
            if (guarded) GuardedGradients.ZeroWhereHidden(tile.Scores, scratch.ProbGrad, br, rows.Count, keyCount);
        }
        for (int n = 0; n < keyCount * br; n += c)
            TOps.Store(scratch.ProbGrad + n, TOps.Multiply(TOps.Load(scratch.ProbGrad + n), scale));
        return guarded ? GuardedGradients.FiniteKeys(keys, keyPitch, keyCount, f.HeadDim, dPad, tile, out keyPitch) : keys;
    }

    /// <summary>
    /// The scaled, modified, biased and masked scores of one key block in the tile's score scratch ([key][row]);
    /// <paramref name="raw"/>, when given, receives the scaled scores before the score functor (for its derivative).
    /// Returns the key block's rows.
    /// </summary>
    private static float* MaskedScores(in CpuAttentionJob<T> f, int batch, in TileRows rows, int firstKey, int keyCount, int dPad,
        CpuTileScratch tile, in FlexMods<TMask, TScore> mods, BlockKind kind, float* raw, out nint keyPitch)
    {
        int br = TileRows;
        float* keys = TileStaging.Keys(f, batch, rows.KvHead, firstKey, keyCount, dPad, tile, out keyPitch);
        ScoreGemm<TOps, TVec>.ComputeScaled(keys, keyPitch, keyCount, tile.QueryT, br, f.HeadDim, tile.Scores, f.Scale);
        if (raw != null) new Span<float>(tile.Scores, keyCount * br).CopyTo(new Span<float>(raw, keyCount * br)); // the functor's inputs
        FlexMasking<TMask, TScore>.ScoreModsAndMasks(tile.Scores, ScoreLayout.Transposed(br), firstKey, keyCount, rows, f, batch, mods, kind);
        return keys;
    }

    private static void WriteScoreGradient(in CpuBackwardJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, float* scoreGradient)
    {
        int br = TileRows;
        var target = job.ScoreGradient;
        for (int r = 0; r < rows.Count; r++)
        {
            float* row = &target.Base[target.Offset(batch, rows.Head(r), rows.Query(r), firstKey)];
            for (int j = 0; j < keyCount; j++) row[j * target.Stride3] = scoreGradient[j * br + r];
        }
    }

    /// <summary>dS ← dS · functor'(scaled score): the gradient reaches Q and K through the score functor.</summary>
    private static void ChainThroughScoreMod(int batch, in TileRows rows, int firstKey, int keyCount, BackwardScratch scratch, in FlexMods<TMask, TScore> mods)
    {
        int br = TileRows;
        var score = mods.Score;
        for (int r = 0; r < rows.Count; r++)
        {
            int head = rows.Head(r), query = rows.Query(r);
            for (int j = 0; j < keyCount; j++)
                scratch.ProbGrad[j * br + r] *= score.Derivative(scratch.ScoreRaw[j * br + r], batch, head, query, firstKey + j);
        }
    }
}
