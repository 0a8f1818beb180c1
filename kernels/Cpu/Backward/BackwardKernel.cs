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

    public const int KeyBlock = 64;

    public static int TileRows => FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TileRows;

    private static int Padded(int n) => (n + TOps.Count - 1) / TOps.Count * TOps.Count;

    public static int QueryTaskCount(in CpuBackwardJob<T> job) =>
        FlashForwardKernel<T, TOps, TVec, TMask, TScore>.TaskCount(job.Forward);

    public static int KeyTaskCount(in CpuBackwardJob<T> job) =>
        job.Forward.Batch * job.Forward.KvHeads * ((job.Forward.KeyLength + KeyBlock - 1) / KeyBlock);

    /// <summary>Phase 1: dQ of one row tile.</summary>
    public static void RunQueryTile(in CpuBackwardJob<T> job, int task, in FlexMods<TMask, TScore> mods)
    {
        var f = job.Forward;
        int br = TileRows;
        int tilesPerHead = (f.RowsPerKvHead + br - 1) / br;
        int batch = task / (f.KvHeads * tilesPerHead), kvHead = task / tilesPerHead % f.KvHeads, firstRow = task % tilesPerHead * br;
        var rows = new TileRows(firstRow, Math.Min(br, f.RowsPerKvHead - firstRow), f.GroupSize, kvHead);
        int dPad = Padded(f.HeadDim), dvPad = Padded(f.ValueDim);
        var tile = CpuTileScratch.For(br, KeyBlock, dPad, dvPad);
        var scratch = BackwardScratch.For(br, KeyBlock, dPad, dvPad);
        QueryTile(job, batch, rows, dPad, dvPad, tile, scratch, null, null, mods);
    }

    /// <summary>Phase 2: dK and dV of one key tile.</summary>
    public static void RunKeyTile(in CpuBackwardJob<T> job, int task, in FlexMods<TMask, TScore> mods)
    {
        var f = job.Forward;
        int keyTiles = (f.KeyLength + KeyBlock - 1) / KeyBlock;
        int batch = task / (f.KvHeads * keyTiles), kvHead = task / keyTiles % f.KvHeads, firstKey = task % keyTiles * KeyBlock;
        KeyTile(job, batch, kvHead, firstKey, mods);
    }

    /// <summary>
    /// The single-pass alternative for one (batch, KV head): row tiles in order, each loaded once, walking the key
    /// blocks its rows can see; dQ of the tile accumulates in order of keys, and dK/dV in a private [Lk] buffer in
    /// order of row tiles: the same terms in the same order as phases 1 and 2, so both ways give the same bits.
    /// S and dP are computed once per (row tile, key block) instead of twice.
    /// </summary>
    public static void RunHead(in CpuBackwardJob<T> job, int task, in FlexMods<TMask, TScore> mods)
    {
        var f = job.Forward;
        int br = TileRows;
        int batch = task / f.KvHeads, kvHead = task % f.KvHeads;
        int dPad = Padded(f.HeadDim), dvPad = Padded(f.ValueDim);
        long keyRows = (f.KeyLength + KeyBlock - 1) / KeyBlock * KeyBlock;
        float* keyGrad = BackwardScratch.HeadKeyValueGradient(keyRows * (dPad + dvPad));
        float* valueGrad = keyGrad + keyRows * dPad;
        new Span<float>(keyGrad, (int)(keyRows * (dPad + dvPad))).Clear();
        var tile = CpuTileScratch.For(br, KeyBlock, dPad, dvPad);
        var scratch = BackwardScratch.For(br, KeyBlock, dPad, dvPad);
        for (int firstRow = 0; firstRow < f.RowsPerKvHead; firstRow += br)
        {
            var rows = new TileRows(firstRow, Math.Min(br, f.RowsPerKvHead - firstRow), f.GroupSize, kvHead);
            QueryTile(job, batch, rows, dPad, dvPad, tile, scratch, keyGrad, valueGrad, mods);
        }
        WriteKeyGradients(job, batch, kvHead, 0, f.KeyLength, keyGrad, valueGrad, dPad, dvPad);
    }

    /// <summary>
    /// One row tile against the key blocks its rows can see: dQ of the tile (written out), and with
    /// <paramref name="keyGrad"/> and <paramref name="valueGrad"/> ([Lk rounded to blocks][padded dims]) also the
    /// tile's terms of dK and dV.
    /// </summary>
    private static void QueryTile(in CpuBackwardJob<T> job, int batch, in TileRows rows, int dPad, int dvPad,
        CpuTileScratch tile, BackwardScratch scratch, float* keyGrad, float* valueGrad, in FlexMods<TMask, TScore> mods)
    {
        var f = job.Forward;
        int br = TileRows, c = TOps.Count;
        BackwardStaging.LoadRows(job, batch, rows, br, dPad, dvPad, tile, scratch);
        new Span<float>(scratch.QueryGrad, br * dPad).Clear();
        var byKey = new ScoreLayout(br, 1);
        var band = f.Band;
        long keyBegin = Math.Max(0, rows.FirstQuery + band.Lo);
        long keyEnd = Math.Min(f.KeyLength, rows.LastQuery + band.Hi + 1);
        for (long firstKey = keyBegin / KeyBlock * KeyBlock; firstKey < keyEnd; firstKey += KeyBlock)
        {
            int keyCount = (int)Math.Min(KeyBlock, f.KeyLength - firstKey);
            var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, (int)firstKey, keyCount);
            if (kind == BlockKind.Empty) continue; // a block mask's empty block: nothing to differentiate
            float* keys = ScoreGradients(job, batch, rows, (int)firstKey, keyCount, dPad, dvPad, tile, scratch, writeScoreGradient: true, mods, kind, out nint keyPitch);
            ValueGemm<TOps, TVec>.Accumulate(scratch.ProbGrad, br, keyCount, keys, keyPitch, dPad / c, scratch.QueryGrad, dPad, scratch.Ones);
            if (keyGrad == null) continue;
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

    /// <summary>dK and dV of one key tile, over the row tiles that can see it, in order.</summary>
    private static void KeyTile(in CpuBackwardJob<T> job, int batch, int kvHead, int firstKey, in FlexMods<TMask, TScore> mods)
    {
        var f = job.Forward;
        int br = TileRows, c = TOps.Count;
        int keyCount = Math.Min(KeyBlock, f.KeyLength - firstKey);
        int dPad = Padded(f.HeadDim), dvPad = Padded(f.ValueDim);
        var tile = CpuTileScratch.For(br, KeyBlock, dPad, dvPad);
        var scratch = BackwardScratch.For(br, KeyBlock, dPad, dvPad);
        new Span<float>(scratch.KeyGrad, KeyBlock * dPad).Clear();
        new Span<float>(scratch.ValueGrad, KeyBlock * dvPad).Clear();

        // Queries i see key j when Lo <= j - i <= Hi: the rows that can see any key of the tile.
        var band = f.Band;
        long firstQuery = Math.Max(0, firstKey - band.Hi);
        long lastQuery = Math.Min(f.QueryLength - 1, firstKey + keyCount - 1 - band.Lo);
        if (firstQuery <= lastQuery)
        {
            long rowEnd = (lastQuery + 1) * f.GroupSize;
            for (long firstRow = firstQuery * f.GroupSize / br * br; firstRow < rowEnd; firstRow += br)
            {
                var rows = new TileRows((int)firstRow, (int)Math.Min(br, f.RowsPerKvHead - firstRow), f.GroupSize, kvHead);
                var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, firstKey, keyCount);
                if (kind == BlockKind.Empty) continue;
                BackwardStaging.LoadRows(job, batch, rows, br, dPad, dvPad, tile, scratch);
                ScoreGradients(job, batch, rows, firstKey, keyCount, dPad, dvPad, tile, scratch, writeScoreGradient: false, mods, kind, out _);
                // dV = Pᵀ·dO and dK = dSᵀ·Q read the [key][row] blocks directly: output row = key, summed over rows.
                // Key rows past keyCount read stale scratch and are never written out.
                var byKey = new ScoreLayout(br, 1);
                ValueGemm<TOps, TVec>.Accumulate(tile.Scores, byKey, KeyBlock, br, scratch.OutputGrad, dvPad, dvPad / c, scratch.ValueGrad, dvPad, scratch.Ones);
                ValueGemm<TOps, TVec>.Accumulate(scratch.ProbGrad, byKey, KeyBlock, br, scratch.QueryRows, dPad, dPad / c, scratch.KeyGrad, dPad, scratch.Ones);
            }
        }
        WriteKeyGradients(job, batch, kvHead, firstKey, keyCount, scratch.KeyGrad, scratch.ValueGrad, dPad, dvPad);
    }

    /// <summary>
    /// P (in the tile's score scratch) and dS·scale (in ProbGrad) of one key block, both as [key][row]; returns the
    /// key block's rows (padded to dPad) for dQ = dS·K.
    /// </summary>
    private static float* ScoreGradients(in CpuBackwardJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int dPad, int dvPad,
        CpuTileScratch tile, BackwardScratch scratch, bool writeScoreGradient, in FlexMods<TMask, TScore> mods, BlockKind kind, out nint keyPitch)
    {
        var f = job.Forward;
        int br = TileRows, c = TOps.Count;
        float* keys = TileStaging.Keys(f, batch, rows.KvHead, firstKey, keyCount, dPad, tile, out keyPitch);
        ScoreGemm<TOps, TVec>.Compute(keys, keyPitch, keyCount, tile.QueryT, br, f.HeadDim, tile.Scores);
        BlockMasking.Scale<TOps, TVec>(tile.Scores, keyCount * br, f.Scale);
        bool chain = !FlexMods<TMask, TScore>.ScoreIsIdentity;
        if (chain) new Span<float>(tile.Scores, keyCount * br).CopyTo(new Span<float>(scratch.ScoreRaw, keyCount * br)); // the functor's inputs
        FlexMasking<TMask, TScore>.ScoreModsAndMasks(tile.Scores, ScoreLayout.Transposed(br), firstKey, keyCount, rows, f, batch, mods, kind);
        float* values = TileStaging.Values(f, batch, rows.KvHead, firstKey, keyCount, dvPad, c, tile, out nint valuePitch);
        ScoreGemm<TOps, TVec>.Compute(values, valuePitch, keyCount, scratch.OutputGradT, br, f.ValueDim, scratch.ProbGrad);

        TVec log2E = TOps.Broadcast(Log2E), scale = TOps.Broadcast(f.Scale);
        for (int v = 0; v < br; v += c)
        {
            TVec lse = TOps.Load(scratch.RowLse + v), rowD = TOps.Load(scratch.RowD + v);
            for (int j = 0; j < keyCount; j++)
            {
                float* s = tile.Scores + j * br + v;
                float* dp = scratch.ProbGrad + j * br + v;
                TVec p = TOps.Exp2(TOps.Multiply(TOps.Subtract(TOps.Load(s), lse), log2E));
                TOps.Store(s, p);
                TOps.Store(dp, TOps.Multiply(p, TOps.Subtract(TOps.Load(dp), rowD)));
            }
        }
        // dP now holds the raw score gradient P ∘ (dP − D): the bias gradient takes it as is, dQ and dK want it scaled.
        if (writeScoreGradient && !job.ScoreGradient.IsEmpty) WriteScoreGradient(job, batch, rows, firstKey, keyCount, scratch.ProbGrad);
        if (chain) ChainThroughScoreMod(batch, rows, firstKey, keyCount, scratch, mods);
        for (int n = 0; n < keyCount * br; n += c)
            TOps.Store(scratch.ProbGrad + n, TOps.Multiply(TOps.Load(scratch.ProbGrad + n), scale));
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
