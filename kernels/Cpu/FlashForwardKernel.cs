using System.Numerics.Tensors;
using AttentionEngine.Kernels.Cpu.Int8Scores;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Flash-attention forward on the CPU: one task is one tile of rows of one (batch, KV head); it walks the key blocks
/// the band leaves visible, keeping O, m and l for its rows and never an Lq x Lk matrix. Every task computes its rows
/// on its own in a fixed order, so the result does not depend on how tasks are spread over threads. Key blocks a
/// block mask leaves empty for the whole tile are skipped; mask and score functors are applied in <see cref="Scores"/>.
/// </summary>
internal static unsafe class FlashForwardKernel<T, TOps, TVec, TMask, TScore>
    where T : unmanaged where TOps : struct, IVectorOps<TVec> where TVec : struct where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    /// <summary>
    /// Query vectors per tile: 4 with AVX-512's 32 registers (16 accumulators in the score micro-kernel, and 64-row
    /// tiles that line up with 64-row block masks), 3 with 16 registers (12 accumulators).
    /// </summary>
    public static int RowVectors => TOps.Count == 16 ? 4 : 3;

    /// <summary>Keys per block (<see cref="CpuKeyBlock"/>).</summary>
    public const int KeyBlock = CpuKeyBlock.Keys;

    public static int TileRows => RowVectors * TOps.Count;

    /// <summary>Tasks of the call: groups of <see cref="TilesPerTask"/> row tiles of one (batch, KV head).</summary>
    public static int TaskCount(in CpuAttentionJob<T> job) => checked(job.Batch * job.KvHeads * GroupsPerHead(job));

    /// <summary>Row tiles one task runs (<see cref="TileGrouping"/>).</summary>
    public static int TilesPerTask(in CpuAttentionJob<T> job) =>
        TileGrouping.TilesPerTask(job.TileGrouping, TilesPerHead(job), (long)job.Batch * job.KvHeads, job.KeyLength, job.HeadDim, job.ValueDim);

    /// <summary>Row tiles of the call, one task each in the backward pass.</summary>
    public static int TileCount(in CpuAttentionJob<T> job) => checked(job.Batch * job.KvHeads * TilesPerHead(job));

    private static int GroupsPerHead(in CpuAttentionJob<T> job)
    {
        int group = TilesPerTask(job);
        return (TilesPerHead(job) + group - 1) / group;
    }

    public static void RunTask(in CpuAttentionJob<T> job, int task, in FlexMods<TMask, TScore> mods)
    {
        int br = TileRows, c = TOps.Count;
        int group = TilesPerTask(job), groupsPerHead = GroupsPerHead(job), tilesPerHead = TilesPerHead(job);
        int batch = (int)(task / ((long)job.KvHeads * groupsPerHead));
        int kvHead = task / groupsPerHead % job.KvHeads;
        int firstTile = task % groupsPerHead * group, count = Math.Min(group, tilesPerHead - firstTile);
        int dvPad = (job.ValueDim + c - 1) / c * c;
        // One walk over the key blocks for all the task's tiles (usually one), each tile taking only its own blocks, in order.
        int block = Block(job, mods, dvPad);
        var scratches = CpuTileScratch.Group(count, br, block, job.HeadDim, dvPad);
        Span<TileRows> rows = stackalloc TileRows[count];
        Span<long> firstBlocks = stackalloc long[count], keyEnds = stackalloc long[count];
        long start = long.MaxValue, end = long.MinValue;
        for (int i = 0; i < count; i++)
        {
            rows[i] = Rows(job, kvHead, firstTile + i);
            (firstBlocks[i], keyEnds[i]) = rows[i].VisibleKeys(job.Band, job.KeyLength, block);
            if (firstBlocks[i] >= keyEnds[i]) continue;
            start = Math.Min(start, firstBlocks[i]);
            end = Math.Max(end, keyEnds[i]);
        }
        // The first block's keys travel while the queries are staged; then each step requests its own values (read
        // after the score GEMM) and the next step's keys (read after this step's value GEMM).
        bool prefetch = start < end && PrefetchesKeyValues(job);
        if (prefetch) PrefetchKeys(job, batch, rows, firstBlocks, keyEnds, start, block, mods);
        for (int i = 0; i < count; i++) Begin(job, batch, rows[i], dvPad, scratches[i]);
        for (long firstKey = start; firstKey < end; firstKey += block)
        {
            if (prefetch)
            {
                PrefetchValues(job, batch, rows, firstBlocks, keyEnds, firstKey, block, mods);
                PrefetchKeys(job, batch, rows, firstBlocks, keyEnds, firstKey + block, block, mods);
            }
            for (int i = 0; i < count; i++)
                if (firstKey >= firstBlocks[i] && firstKey < keyEnds[i])
                    Step(job, batch, rows[i], firstKey, KeyCount(job, block, firstKey, keyEnds[i]), dvPad, scratches[i], mods, guarded: false);
        }
        for (int i = 0; i < count; i++)
            Finish(job, batch, rows[i], block, firstBlocks[i], keyEnds[i], dvPad, scratches[i], mods);
    }

    private static TileRows Rows(in CpuAttentionJob<T> job, int kvHead, int tile)
    {
        int firstRow = tile * TileRows;
        return new TileRows(firstRow, Math.Min(TileRows, job.RowsPerKvHead - firstRow), job.GroupSize, kvHead);
    }

    /// <summary>Stages the tile's queries (and their int8 and dropout state), clears its accumulators.</summary>
    private static void Begin(in CpuAttentionJob<T> job, int batch, in TileRows rows, int dvPad, CpuTileScratch scratch)
    {
        int br = TileRows;
        TileStaging.LoadQueriesTransposed(job, batch, rows, br, scratch);
        if (job.Int8Scores.IsRequested) Int8TileScores<TOps, TVec>.PrepareRows(br, job.HeadDim, job.Scale, scratch);
        if (job.Dropout.IsActive) TileDropout<TOps, TVec>.PrepareRows(job, batch, rows, br, scratch);
        Clear(scratch, br, dvPad, clearOutput: false);
    }

    /// <summary>
    /// Whether the call's tasks request their K and V lines ahead (<see cref="KeyValuePrefetch"/>): when K and V come from
    /// memory and a head has at most two row tiles, so that each tile reads them from there (two threads run the two
    /// tiles at once). In-process alternation, 2 threads, with/without time: B82 H8 N100 D128 0.94-0.99, B64 H8 N128
    /// D128 0.97, B128 H8 N64 D128 causal 0.95, B128 H8 N64 D64 0.95 (causal 0.89), B82 H8 N100 D64 0.96 (causal 0.88).
    /// Where later tiles find the head in L2, the requests only move lines into L1 early and evict what the score GEMM
    /// streams: B25 H8 N333 D128 1.02, B16 H8 N512 D64 1.01.
    /// </summary>
    private static bool PrefetchesKeyValues(in CpuAttentionJob<T> job) =>
        job.Prefetch == 2 || TilesPerHead(job) <= 2 && KeyValuePrefetch.Worthwhile(job);

    /// <summary>
    /// Requests the float keys of the step at <paramref name="firstKey"/> if some tile of the task will read them (int8
    /// scores read their own quantised keys).
    /// </summary>
    private static void PrefetchKeys(in CpuAttentionJob<T> job, int batch, ReadOnlySpan<TileRows> rows, ReadOnlySpan<long> firstBlocks,
        ReadOnlySpan<long> keyEnds, long firstKey, int block, in FlexMods<TMask, TScore> mods)
    {
        if (job.Int8Scores.IsRequested) return;
        int keyCount = StepKeys(job, batch, rows, firstBlocks, keyEnds, firstKey, block, mods);
        if (keyCount > 0) KeyValuePrefetch.Keys(job, batch, rows[0].KvHead, firstKey, keyCount);
    }

    /// <summary>Requests the values of the step at <paramref name="firstKey"/> if some tile of the task will read them.</summary>
    private static void PrefetchValues(in CpuAttentionJob<T> job, int batch, ReadOnlySpan<TileRows> rows, ReadOnlySpan<long> firstBlocks,
        ReadOnlySpan<long> keyEnds, long firstKey, int block, in FlexMods<TMask, TScore> mods)
    {
        int keyCount = StepKeys(job, batch, rows, firstBlocks, keyEnds, firstKey, block, mods);
        if (keyCount > 0) KeyValuePrefetch.Values(job, batch, rows[0].KvHead, firstKey, keyCount);
    }

    /// <summary>The most keys any tile of the task reads in the step at <paramref name="firstKey"/>: 0 when none steps there or a block mask empties it for all.</summary>
    private static int StepKeys(in CpuAttentionJob<T> job, int batch, ReadOnlySpan<TileRows> rows, ReadOnlySpan<long> firstBlocks,
        ReadOnlySpan<long> keyEnds, long firstKey, int block, in FlexMods<TMask, TScore> mods)
    {
        int most = 0;
        for (int i = 0; i < rows.Length; i++)
        {
            if (firstKey < firstBlocks[i] || firstKey >= keyEnds[i]) continue;
            int keyCount = KeyCount(job, block, firstKey, keyEnds[i]);
            if (keyCount > most && FlexMasking<TMask, TScore>.TileKind(mods, batch, rows[i], (int)firstKey, keyCount) != BlockKind.Empty) most = keyCount;
        }
        return most;
    }

    /// <summary>Finishes a tile whose fast pass has run: the guarded pass where it must, the output, and the weights.</summary>
    private static void Finish(in CpuAttentionJob<T> job, int batch, in TileRows rows, int block, long firstBlock, long keyEnd, int dvPad,
        CpuTileScratch scratch, in FlexMods<TMask, TScore> mods)
    {
        int br = TileRows;
        if (scratch.OutputUnset) new Span<float>(scratch.Output, rows.Count * dvPad).Clear(); // no key block was visible
        // A non-finite output means NaN or infinity reached the accumulators: a hidden key's value (0 · NaN), a sum of
        // huge values that overflowed, or garbage the row does see. The guarded pass tells these apart (rare: hostile
        // inputs only), so the fast pass stays free of per-value checks.
        if (!TensorPrimitives.IsFiniteAll(new ReadOnlySpan<float>(scratch.Output, rows.Count * dvPad)))
        {
            Clear(scratch, br, dvPad, clearOutput: true);
            for (long firstKey = firstBlock; firstKey < keyEnd; firstKey += block)
                Step(job, batch, rows, firstKey, KeyCount(job, block, firstKey, keyEnd), dvPad, scratch, mods, guarded: true);
        }

        Epilogue.Write(job, batch, rows, dvPad, scratch);

        if (!job.Weights.IsEmpty)
        {
            // Weights need the final m and l, so they are a second pass over the same blocks (inspection only).
            Epilogue.ClearWeights(job, batch, rows);
            for (long firstKey = firstBlock; firstKey < keyEnd; firstKey += block)
            {
                int keyCount = KeyCount(job, block, firstKey, keyEnd);
                var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, (int)firstKey, keyCount);
                if (kind == BlockKind.Empty) continue;
                Scores(job, batch, rows, (int)firstKey, keyCount, scratch, mods, kind);
                OnlineSoftmax<TOps, TVec>.Normalize(scratch.Scores, br, keyCount, scratch.RowMax, scratch.RowSum);
                if (job.WeightsAfterDropout && job.Dropout.IsActive) TileDropout<TOps, TVec>.DrawAndApply(job, (int)firstKey, keyCount, br, scratch.Scores, scratch);
                Epilogue.WriteWeights(job, batch, rows, ScoreLayout.Transposed(br), (int)firstKey, keyCount, scratch.Scores);
            }
        }
    }

    /// <summary>
    /// Keys per step of the call's walk: <see cref="KeyBlock"/>, or all the keys at once when there are at most two
    /// blocks of them, the rows are narrow, and nothing needs the 64-key granularity (block masks skip by it, int8
    /// scores quantise keys by it, dropout draws by it). Every step pays the same set-up whatever its keys (softmax
    /// state, the rescale and the value GEMM's loads and stores of O): at N = 100 the second step held 36 keys, and one
    /// fat step does the set-up once, 4-5% faster at D = 64 (B82 H8 N100, B64 H8 N128; paired runs). At D = 128 a fat
    /// step's 64 KB value block leaves L1 and ran 2-5% slower, so wide rows keep 64-key steps. The step size depends on
    /// the shape only, so results stay deterministic; they are not the same bits as 64-key steps.
    /// </summary>
    private static int Block(in CpuAttentionJob<T> job, in FlexMods<TMask, TScore> mods, int dvPad) =>
        job.KeyLength > KeyBlock && job.KeyLength <= FatBlock && job.HeadDim <= FatRowFloats && dvPad <= FatRowFloats
        && !mods.HasBlocks && !job.Int8Scores.IsRequested && !job.Dropout.IsActive
            ? FatBlock : KeyBlock;

    /// <summary>Widest K and V rows (floats) that take fat steps.</summary>
    private const int FatRowFloats = 64;

    /// <summary>The largest step: two key blocks.</summary>
    private const int FatBlock = 2 * KeyBlock;

    /// <summary>
    /// Keys of the step at <paramref name="firstKey"/>: up to the block's end or the end of what the tile's band lets
    /// it see, whichever comes first. Keys past the band are hidden from every row of the tile, so computing them (as
    /// steps once did, to the end of the keys) only added exact zeros: B16 H8 Hkv2 N700 D64 causal, whose interleaved
    /// GQA rows end their band mid-block, took 0.91x the time. Int8 scores keep whole blocks: their keys are quantised,
    /// and their rows' eligibility decided, per 64-key block.
    /// </summary>
    private static int KeyCount(in CpuAttentionJob<T> job, int block, long firstKey, long keyEnd) =>
        (int)Math.Min(block, (job.Int8Scores.IsRequested ? job.KeyLength : keyEnd) - firstKey);

    /// <summary>Row tiles of one (batch, KV head).</summary>
    private static int TilesPerHead(in CpuAttentionJob<T> job) => (int)((job.RowsPerKvHead + (long)TileRows - 1) / TileRows);

    /// <summary>Empty accumulators: O = 0, m = −infinity, l = 0, row scale 1.</summary>
    /// <param name="clearOutput">
    /// false for the fast pass: its first key block starts the accumulators at zero instead of loading zeros, the same
    /// bits (0 · rescale is +0 either way) without a pass over O, which at N = 64 is a tenth of the tile's memory traffic.
    /// </param>
    private static void Clear(CpuTileScratch scratch, int br, int dvPad, bool clearOutput)
    {
        if (clearOutput) new Span<float>(scratch.Output, br * dvPad).Clear();
        scratch.OutputUnset = !clearOutput;
        new Span<float>(scratch.RowMax, br).Fill(float.NegativeInfinity);
        new Span<float>(scratch.RowSum, br).Clear();
        new Span<float>(scratch.RowScale, br).Fill(1f);
    }

    /// <summary>One key block of the online-softmax walk into the tile's O, m and l (and the rows' accumulator scales).</summary>
    private static void Step(in CpuAttentionJob<T> job, int batch, in TileRows rows, long firstKey, int keyCount, int dvPad,
        CpuTileScratch scratch, in FlexMods<TMask, TScore> mods, bool guarded)
    {
        int br = TileRows, c = TOps.Count;
        var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, (int)firstKey, keyCount);
        if (kind == BlockKind.Empty) return; // a block mask's empty block: never touched
        int active = guarded ? br : ActiveRows(job, rows);
        // Where the band cuts the block (a causal diagonal), the fast pass leaves out what it hides: score vectors of rows
        // before a key group, value keys after a row group.
        int* firstVectors = null, groupKeys = null;
        if (!guarded && !job.Band.ContainsAll(rows.FirstQuery, rows.LastQuery, firstKey, firstKey + (long)keyCount - 1))
        {
            // Groups of 4 keys of the largest step, and of 4 rows of the largest tile (64 rows: fewer groups).
            int* limits = stackalloc int[2 * (FatBlock / 4)];
            firstVectors = limits;
            groupKeys = limits + FatBlock / 4;
            if (!BandLimits(job, rows, firstKey, keyCount, active, firstVectors, groupKeys)) firstVectors = null;
        }
        Scores(job, batch, rows, (int)firstKey, keyCount, scratch, mods, kind, active, firstVectors);
        OnlineSoftmax<TOps, TVec>.Update(scratch.Scores, br, keyCount, scratch.RowMax, scratch.RowSum, scratch.RowRescale, active);
        // Dropout scales the probabilities after the row sum took them: l normalises the undropped row, as P is.
        if (job.Dropout.IsActive) TileDropout<TOps, TVec>.DrawAndApply(job, (int)firstKey, keyCount, br, scratch.Scores, scratch);
        float* values = TileStaging.Values(job, batch, rows.KvHead, (int)firstKey, keyCount, dvPad, c, scratch, out nint valuePitch);
        if (guarded)
            GuardedValues<TOps, TVec>.AccumulateTile(job, batch, rows, (int)firstKey, keyCount, br, values, valuePitch, dvPad, scratch);
        else
        {
            // The value GEMM works in groups of 4 rows, not vectors: a tail tile's O takes only its rows rounded up to 4
            // (B82 H8 N100: 36 rows of the tail tile, not 48). O's rows past them are never read.
            int valueRows = Math.Min(active, (rows.Count + 3) & ~3);
            ValueGemm<TOps, TVec>.Accumulate(scratch.Scores, br, keyCount, values, valuePitch, dvPad / c, scratch.Output, dvPad,
                scratch.OutputUnset ? null : scratch.RowRescale, valueRows, groupKeys);
            scratch.OutputUnset = false;
        }
    }

    /// <summary>
    /// What a band that cuts the block hides, in the GEMMs' units: per group of 4 keys the first vector of rows that sees
    /// one of them (earlier rows are hidden from all four; the band's mask then writes −infinity over their scores), and
    /// per group of 4 rows the keys up to the last one any of them sees. B128 H8 N64 D128 causal is all diagonal block.
    /// Returns false for the score limits when a score functor must see every score of the block.
    /// </summary>
    private static bool BandLimits(in CpuAttentionJob<T> job, in TileRows rows, long firstKey, int keyCount, int active, int* firstVectors, int* groupKeys)
    {
        var band = job.Band;
        for (int r = 0; r < active; r += 4)
        {
            long end = band.EndKey(rows.Query(Math.Min(r + 3, rows.Count - 1)), job.KeyLength);
            groupKeys[r >> 2] = (int)Math.Clamp(end - firstKey, 0, keyCount);
        }
        if (!FlexMods<TMask, TScore>.ScoreIsIdentity || job.Int8Scores.IsRequested) return false;
        for (int j = 0; j + 4 <= keyCount; j += 4)
            firstVectors[j >> 2] = Math.Min(rows.FirstRowAtOrAfter(firstKey + j - band.Hi), active) / TOps.Count;
        return true;
    }

    /// <summary>
    /// Rows the fast pass computes: a tail tile's rows rounded up to a vector (the score GEMM and the softmax hold rows
    /// along the lanes), so a head of 100 queries computes 64 + 48 rows, and one of 333 computes 5 · 64 + 16 (three-vector tails made it 5 · 64 + 48).
    /// The rows left out are padding, never written. Int8 scores and dropout, and the guarded and weights passes, keep
    /// the whole tile.
    /// </summary>
    private static int ActiveRows(in CpuAttentionJob<T> job, in TileRows rows) =>
        job.Int8Scores.IsRequested || job.Dropout.IsActive ? TileRows : Math.Min(TileRows, (rows.Count + TOps.Count - 1) / TOps.Count * TOps.Count);

    /// <summary>
    /// Masked, scaled, biased scores of one key block, Sᵀ[j][r], in the score scratch: int8 scores where the call asked
    /// for them and the block is in the quantiser's range (float scores for the rows that cannot use them), else float.
    /// </summary>
    private static void Scores(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, CpuTileScratch scratch,
        in FlexMods<TMask, TScore> mods, BlockKind kind, int active = 0, int* firstVectors = null)
    {
        int br = TileRows;
        var int8 = job.Int8Scores;
        if (int8.IsRequested && int8.IsUsable(batch, rows.KvHead, firstKey / KeyBlock))
        {
            Int8TileScores<TOps, TVec>.Compute(int8, batch, rows.KvHead, firstKey, keyCount, br, job.HeadDim, job.Scale, scratch);
            FlexMasking<TMask, TScore>.ScoreModsAndMasks(scratch.Scores, ScoreLayout.Transposed(br), firstKey, keyCount, rows, job, batch, mods, kind);
            if (!Int8TileScores<TOps, TVec>.RowsNeedingFloat(scratch.Scores, br, keyCount, scratch)) return;
            FloatScores(job, batch, rows, firstKey, keyCount, scratch, mods, kind, scratch.ExactScores);
            Int8TileScores<TOps, TVec>.TakeFloatRows(scratch.Scores, scratch.ExactScores, br, keyCount, scratch);
            return;
        }
        FloatScores(job, batch, rows, firstKey, keyCount, scratch, mods, kind, scratch.Scores, active, firstVectors);
    }

    /// <summary>Masked, scaled, biased float scores of one key block into <paramref name="scores"/> ([Bc][Br]).</summary>
    private static void FloatScores(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, CpuTileScratch scratch,
        in FlexMods<TMask, TScore> mods, BlockKind kind, float* scores, int active = 0, int* firstVectors = null)
    {
        int br = TileRows;
        float* keys = TileStaging.Keys(job, batch, rows.KvHead, firstKey, keyCount, job.HeadDim, scratch, out nint keyPitch);
        ScoreGemm<TOps, TVec>.ComputeScaled(keys, keyPitch, keyCount, scratch.QueryT, br, job.HeadDim, scores, job.Scale, active, firstVectors);
        FlexMasking<TMask, TScore>.ScoreModsAndMasks(scores, ScoreLayout.Transposed(br), firstKey, keyCount, rows, job, batch, mods, kind);
    }
}
