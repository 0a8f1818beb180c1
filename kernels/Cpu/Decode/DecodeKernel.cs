using System.Numerics.Tensors;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// Attention for few queries (decoding: Lq = 1 or a few speculative tokens), where the tile kernel would leave most
/// vector lanes idle. Keys run along the lanes: scores are dot products over whole vectors of the head dimension, the
/// softmax is per row, and every row of the KV head (its queries times the query heads of its GQA group) shares each
/// key and value block while it is in cache. Each row is computed on its own, so a row's bits do not depend on
/// which rows share its task. Each (batch, KV head) is cut into key splits (<see cref="DecodeSplits"/>); a split keeps
/// its own max, sum and output, and <see cref="Merge"/> combines them in split order.
/// </summary>
internal static unsafe class DecodeKernel<T, TOps, TVec, TMask, TScore>
    where T : unmanaged where TOps : struct, IVectorOps<TVec> where TVec : struct where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    /// <summary>
    /// Most queries this kernel takes; above it the tile kernel's lanes fill up. The choice depends on Lq only, not on
    /// the GQA group, so grouped and repeated heads take the same path.
    /// </summary>
    public const int MaxQueries = 8;

    /// <summary>Keys per block (<see cref="CpuKeyBlock"/>).</summary>
    public const int KeyBlock = CpuKeyBlock.Keys;

    /// <summary>
    /// Few queries, scores in float: int8 scores run in the tile kernel at any Lq (decode is bound by reading K and V,
    /// where int8 products save nothing; an int8 KV cache is the decode path's quantisation).
    /// </summary>
    public static bool Applies(in CpuAttentionJob<T> job) => job.QueryLength <= MaxQueries && !job.Int8Scores.IsRequested;

    /// <summary>Paged K and V (<see cref="KeyValuePages"/>): float, BFloat16 or Half rows only, and only this kernel reads them.</summary>
    public static void ThrowIfPagesUnsupported(in CpuAttentionJob<T> job)
    {
        if (job.Pages.IsActive && (!Applies(job) || job.Int8.IsActive || !job.WideK.IsEmpty))
            throw new InvalidOperationException($"Paged keys and values are read by the decode kernel only (up to {MaxQueries} queries, float or 16-bit rows); this job has {job.QueryLength}.");
    }

    /// <summary>Weights need each row's final max and sum inside the task, so they keep one split per head.</summary>
    public static DecodeSplits Splits(in CpuAttentionJob<T> job) =>
        new(job.KeyLength, KeyBlock, single: !job.Weights.IsEmpty);

    private static int Padded(int n) => (n + TOps.Count - 1) / TOps.Count * TOps.Count;

    /// <summary>Runs split task <paramref name="task"/>; with one split it writes the output, else a partial.</summary>
    /// <param name="slotBase">first partial slot of this job (several jobs can share one partials buffer)</param>
    public static void RunSplit(in CpuAttentionJob<T> job, DecodeSplits splits, int task, DecodePartials? partials, in FlexMods<TMask, TScore> mods,
        long slotBase = 0)
    {
        int split = task % splits.Count, head = task / splits.Count;
        int batch = head / job.KvHeads, kvHead = head % job.KvHeads;
        var rows = new TileRows(0, job.RowsPerKvHead, job.GroupSize, kvHead);
        int dPad = Padded(job.HeadDim), dvPad = Padded(job.ValueDim);
        var scratch = CpuTileScratch.For(rows.Count, KeyBlock, dPad, dvPad);

        LoadQueries(job, batch, rows, dPad, scratch);
        bool scaledKeys = ScaleQueriesForHalfKeys(job, scratch.QueryT, rows.Count * dPad);
        if (job.Dropout.IsActive) TileDropout<TOps, TVec>.PrepareRows(job, batch, rows, rows.Count, scratch);
        var band = job.Band;
        long keyBegin = Math.Max(split * splits.KeysPerSplit, band.FirstKey(rows.FirstQuery));
        long keyEnd = Math.Min((split + 1) * splits.KeysPerSplit, band.EndKey(rows.LastQuery, job.KeyLength));
        AccumulateSplit(job, batch, rows, keyBegin, keyEnd, dPad, dvPad, scratch, mods, scaledKeys, guarded: false);
        // As in the tile kernel: a non-finite output sends the split through the guarded pass (hostile values only).
        if (!TensorPrimitives.IsFiniteAll(new ReadOnlySpan<float>(scratch.Output, rows.Count * dvPad)))
            AccumulateSplit(job, batch, rows, keyBegin, keyEnd, dPad, dvPad, scratch, mods, scaledKeys, guarded: true);

        if (splits.Count == 1)
        {
            Epilogue.Write(job, batch, rows, dvPad, scratch);
            if (!job.Weights.IsEmpty) WriteWeights(job, batch, rows, dPad, keyBegin, keyEnd, scratch, mods, scaledKeys);
            return;
        }
        long slot = slotBase + (long)head * splits.Count + split;
        new Span<float>(scratch.Output, rows.Count * dvPad).CopyTo(new Span<float>(partials!.Output(slot), rows.Count * dvPad));
        new Span<float>(scratch.RowMax, rows.Count).CopyTo(new Span<float>(partials.Max(slot), rows.Count));
        new Span<float>(scratch.RowSum, rows.Count).CopyTo(new Span<float>(partials.Sum(slot), rows.Count));
        new Span<float>(scratch.RowScale, rows.Count).CopyTo(new Span<float>(partials.Scale(slot), rows.Count));
    }

    /// <summary>The split's key blocks into every row's O, m and l (and accumulator scale).</summary>
    /// <param name="scaledKeys">the queries hold 2^112 times their value, for Half keys read in place (<see cref="ScaleQueriesForHalfKeys"/>)</param>
    private static void AccumulateSplit(in CpuAttentionJob<T> job, int batch, in TileRows rows, long keyBegin, long keyEnd, int dPad, int dvPad,
        CpuTileScratch scratch, in FlexMods<TMask, TScore> mods, bool scaledKeys, bool guarded)
    {
        new Span<float>(scratch.Output, rows.Count * dvPad).Clear();
        new Span<float>(scratch.RowMax, rows.Count).Fill(float.NegativeInfinity);
        new Span<float>(scratch.RowSum, rows.Count).Clear();
        new Span<float>(scratch.RowScale, rows.Count).Fill(1f);
        float* valueScales = stackalloc float[KeyBlock]; // int8 values: the block's per-token scales
        bool prefetch = !guarded && KeyValuePrefetch.Worthwhile(job);
        int keyCount;
        long requested = keyBegin + 1; // paged keys: runs starting before this are requested or being read
        for (long firstKey = keyBegin; firstKey < keyEnd; firstKey += keyCount)
        {
            keyCount = (int)Math.Min(KeyBlock, keyEnd - firstKey);
            if (!job.Pages.IsActive) AccumulateBlock(job, batch, rows, firstKey, keyCount, dPad, dvPad, scratch, mods, scaledKeys, guarded, prefetch, valueScales);
            else if (!guarded && KeysInPlace(job) && ValuesInPlace(job))
            {
                // Paged keys read in place: a whole block across runs, each run read at its offset (the blocks, and so
                // the bits, of contiguous keys). The hardware prefetcher does not see a jump to another run, so the
                // starts of runs a few blocks ahead are requested.
                job.Pages.RequestRunStarts(job, batch, rows.KvHead, ref requested, Math.Min(keyEnd, firstKey + keyCount + KeyValuePages.RequestAhead), keyEnd);
                AccumulateBlock(job, batch, rows, firstKey, keyCount, dPad, dvPad, scratch, mods, scaledKeys, guarded, prefetch: false, valueScales);
            }
            else
            {
                // Staged or guarded paged keys: a block stays in its run of consecutive pages, read through the job shifted to that run.
                keyCount = job.Pages.KeysInRun(batch, firstKey, keyCount);
                AccumulateBlock(job.Pages.At(job, batch, firstKey), batch, rows, firstKey, keyCount, dPad, dvPad, scratch, mods, scaledKeys, guarded, prefetch,
                    valueScales);
            }
        }
    }

    /// <summary>
    /// Keys from <paramref name="key"/> (below <paramref name="end"/>) read at one offset: all of them for keys that are
    /// not paged, else those in the run of consecutive pages holding it, with the run's shift in key rows.
    /// </summary>
    private static int Run(in CpuAttentionJob<T> job, int batch, long key, long end, out long shift)
    {
        if (!job.Pages.IsActive)
        {
            shift = 0;
            return (int)(end - key);
        }
        return job.Pages.Run(batch, key, end, out shift);
    }

    /// <summary>One key block into every row's O, m and l.</summary>
    private static void AccumulateBlock(in CpuAttentionJob<T> job, int batch, in TileRows rows, long firstKey, int keyCount, int dPad, int dvPad,
        CpuTileScratch scratch, in FlexMods<TMask, TScore> mods, bool scaledKeys, bool guarded, bool prefetch, float* valueScales)
    {
        int kvHead = rows.KvHead, c = TOps.Count;
        var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, (int)firstKey, keyCount);
        if (kind == BlockKind.Empty) return; // a block mask's empty block: never touched
        if (prefetch)
        {
            KeyValuePrefetch.Keys(job, batch, kvHead, firstKey, keyCount);
            KeyValuePrefetch.Values(job, batch, kvHead, firstKey, keyCount);
        }
        Scores(job, batch, rows, (int)firstKey, keyCount, dPad, scratch, mods, kind, scaledKeys);
        // Dropout multipliers of the block, [key][row] (the tile layout), applied to each row after its softmax step.
        float* dropout = null;
        if (job.Dropout.IsActive)
        {
            TileDropout<TOps, TVec>.Draw(job, (int)firstKey, keyCount, rows.Count, scratch);
            dropout = scratch.Dropout;
        }
        if (guarded)
        {
            for (int r = 0; r < rows.Count; r++)
            {
                scratch.RowRescale[r] = DecodeSoftmax<TOps, TVec>.Update(scratch.Scores + r * KeyBlock, keyCount, ref scratch.RowMax[r], ref scratch.RowSum[r]);
                if (dropout != null) Drop(scratch.Scores + r * KeyBlock, keyCount, dropout + r, rows.Count);
            }
            float* staged = TileStaging.Values(job, batch, kvHead, (int)firstKey, keyCount, dvPad, c, scratch, out nint pitch);
            GuardedValues<TOps, TVec>.AccumulateRows(job, batch, rows, (int)firstKey, keyCount, KeyBlock, staged, pitch, dvPad, scratch.RowRescale, scratch);
        }
        else if (ValuesInPlace(job))
        {
            var v = job.V;
            bool scaled = ScalesHalfValues(job);
            SoftmaxStep(rows, keyCount, scratch, dropout, null, scaled ? ScaledHalf.Factor : 1);
            for (long key = firstKey, end = firstKey + keyCount; key < end;)
            {
                int count = Run(job, batch, key, end, out long shift);
                T* values = &v.Base[v.Offset(batch, kvHead, (nint)(key + shift), 0)];
                if (scaled) AccumulateValues(rows, (int)(key - firstKey), count, (ScaledFiniteHalf*)values, v.Stride2, dvPad, scratch);
                else AccumulateValues(rows, (int)(key - firstKey), count, values, v.Stride2, dvPad, scratch);
                // Keys of later runs of the block add to the outputs as they stand.
                if ((key += count) < end) new Span<float>(scratch.RowRescale, rows.Count).Fill(1f);
            }
        }
        else if (Int8InPlace(job.Int8.V, job.ValueDim))
        {
            // Int8 values are read as integers; each key's scale rides on its probability (after the softmax step).
            var v = job.Int8.V;
            Gather(job.Int8.VScale, batch, kvHead, (int)firstKey, keyCount, valueScales);
            Accumulate(rows, keyCount, &v.Base[v.Offset(batch, kvHead, (int)firstKey, 0)], v.Stride2, dvPad, scratch, dropout, valueScales);
        }
        else
        {
            float* values = TileStaging.Values(job, batch, kvHead, (int)firstKey, keyCount, dvPad, c, scratch, out nint valuePitch);
            Accumulate(rows, keyCount, values, valuePitch, dvPad, scratch, dropout);
        }
    }

    /// <summary>
    /// Combines the splits of (batch, KV head) <paramref name="head"/> in split order: M = max m_s,
    /// l = Σ l_s · e^(m_s − M), O = Σ O_s · e^(m_s − M), then writes O / l and the LSE like the tile kernel. Partials
    /// the guarded pass scaled are brought to the smallest scale of the row (powers of two: exact); a row whose merged
    /// sum overflows (huge values spread over several splits) is merged again at scale 2^-32.
    /// </summary>
    public static void Merge(in CpuAttentionJob<T> job, DecodeSplits splits, int head, DecodePartials partials, long slotBase = 0)
    {
        int batch = head / job.KvHeads, kvHead = head % job.KvHeads;
        var rows = new TileRows(0, job.RowsPerKvHead, job.GroupSize, kvHead);
        int dvPad = Padded(job.ValueDim);
        var scratch = CpuTileScratch.For(rows.Count, KeyBlock, Padded(job.HeadDim), dvPad);
        long first = slotBase + (long)head * splits.Count;
        for (int r = 0; r < rows.Count; r++)
        {
            float max = float.NegativeInfinity, scale = 1;
            for (int s = 0; s < splits.Count; s++)
            {
                max = MathF.Max(max, partials.Max(first + s)[r]);
                scale = MathF.Min(scale, partials.Scale(first + s)[r]);
            }
            float* output = scratch.Output + r * dvPad;
            float sum = MergeRow(splits, partials, first, r, max, scale, output, dvPad);
            if (scale == 1 && !TensorPrimitives.IsFiniteAll(new ReadOnlySpan<float>(output, dvPad)))
            {
                scale = GuardedValues<TOps, TVec>.AccumulatorScale;
                sum = MergeRow(splits, partials, first, r, max, scale, output, dvPad);
            }
            scratch.RowMax[r] = max;
            scratch.RowSum[r] = sum;
            scratch.RowScale[r] = scale;
        }
        Epilogue.Write(job, batch, rows, dvPad, scratch);
    }

    /// <summary>One row's merge into <paramref name="output"/> at accumulator scale <paramref name="scale"/>; returns l.</summary>
    private static float MergeRow(DecodeSplits splits, DecodePartials partials, long first, int r, float max, float scale, float* output, int dvPad)
    {
        int c = TOps.Count;
        float subtract = float.IsNegativeInfinity(max) ? 0 : max;
        float sum = 0;
        new Span<float>(output, dvPad).Clear();
        for (int s = 0; s < splits.Count; s++)
        {
            // A split that saw no visible key has m = −inf and contributes weight e^(−inf) = 0.
            float weight = MathF.Exp(partials.Max(first + s)[r] - subtract);
            sum += partials.Sum(first + s)[r] * weight;
            float* part = partials.Output(first + s) + r * dvPad;
            TVec w = TOps.Broadcast(weight * (scale / partials.Scale(first + s)[r]));
            for (int x = 0; x < dvPad; x += c)
                TOps.Store(output + x, TOps.MultiplyAdd(TOps.Load(part + x), w, TOps.Load(output + x)));
        }
        return sum;
    }

    /// <summary>
    /// For Half keys read in place: multiplies the task's queries by 2^112 when every one fits (<see
    /// cref="ScaledHalf.Fits"/>), so the keys are read as 2^-112 times their value with no multiply per element, the
    /// same products. Returns whether it did; queries of magnitude 2^16 or more (or not finite) keep the full widening.
    /// </summary>
    private static bool ScaleQueriesForHalfKeys(in CpuAttentionJob<T> job, float* queries, int count)
    {
        if (typeof(T) != typeof(Half) || !KeysInPlace(job)) return false;
        var span = new Span<float>(queries, count);
        if (!ScaledHalf.Fits(TensorPrimitives.MaxMagnitude(span))) return false;
        TensorPrimitives.Multiply(span, ScaledHalf.Factor, span);
        return true;
    }

    /// <summary>
    /// Half values read in place take the probabilities times 2^112 (<see cref="ScaledHalf"/>): probabilities are at
    /// most 1, times the dropout scale, which must stay under 2^16 for the product to stay finite.
    /// </summary>
    private static bool ScalesHalfValues(in CpuAttentionJob<T> job) =>
        typeof(T) == typeof(Half) && (!job.Dropout.IsActive || ScaledHalf.Fits(job.Dropout.Scale));

    /// <summary>
    /// Rows that are contiguous and a whole number of vectors long are read where they lie, any storage type and any
    /// number of rows: Half too, as 2^-112 times its value (three operations a vector, checked), measured against
    /// staging it once into float: decode B1 H32 KV8 Lk1024 D128, 1 thread, fp16 over bf16 time 1.06-1.09 read in place
    /// against 1.34-1.40 staged at 16 rows per KV head, 1.05-1.08 against 1.18-1.29 at 32. With the full widening (seven
    /// operations) staging had won past 8 rows.
    /// </summary>
    private static bool KeysInPlace(in CpuAttentionJob<T> job) =>
        !job.Int8.IsActive && ElementLoads<TOps, TVec>.Supports<T>() && job.K.Stride3 == 1 && job.HeadDim % TOps.Count == 0;

    private static bool ValuesInPlace(in CpuAttentionJob<T> job) =>
        !job.Int8.IsActive && ElementLoads<TOps, TVec>.Supports<T>() && job.V.Stride3 == 1 && job.ValueDim % TOps.Count == 0;

    /// <summary>
    /// Whether rows read in place go four GQA rows per loaded vector: yes for every type that is converted in the
    /// register (bf16, Half, int8), so each vector is converted once for the four; float rows are cheaper to load again
    /// per row, with more keys in flight (same-run A/B, decode B1 H32 KV8 D128, AVX2: bf16 1.39-1.51x faster shared,
    /// fp32 0.78-0.81x). Either way a row's bits are the same.
    /// </summary>
    private static bool SharesConversions<TElement>() where TElement : unmanaged => typeof(TElement) != typeof(float);

    /// <summary>
    /// Int8 rows are read in place (converted in the register, the token's scale applied after the dot product or to
    /// the probability) when they are contiguous and a whole number of vectors wide; otherwise they are staged.
    /// </summary>
    private static bool Int8InPlace(in Tensors.RawStrided4<sbyte> rows, int width) =>
        !rows.IsEmpty && rows.Stride3 == 1 && width % TOps.Count == 0;

    /// <summary>
    /// Softmax step (then dropout, when <paramref name="dropout"/> holds the block's multipliers, and the int8 values'
    /// scales when given) and O += P·V for every row, on one block of values.
    /// </summary>
    /// <param name="probabilityFactor">multiplies the probabilities after the softmax step (2^112 for <see cref="ScaledHalf"/> values)</param>
    private static void Accumulate<TValue>(in TileRows rows, int keyCount, TValue* values, nint ldv, int dvPad, CpuTileScratch scratch, float* dropout,
        float* valueScales = null, float probabilityFactor = 1) where TValue : unmanaged
    {
        SoftmaxStep(rows, keyCount, scratch, dropout, valueScales, probabilityFactor);
        AccumulateValues(rows, 0, keyCount, values, ldv, dvPad, scratch);
    }

    /// <summary>
    /// Every row's softmax step on the block's scores (the accumulator's rescale into <see cref="CpuTileScratch.RowRescale"/>),
    /// then its dropout, the int8 values' scales and <paramref name="probabilityFactor"/> on the probabilities.
    /// </summary>
    private static void SoftmaxStep(in TileRows rows, int keyCount, CpuTileScratch scratch, float* dropout, float* valueScales, float probabilityFactor)
    {
        for (int r = 0; r < rows.Count; r++)
        {
            float* p = scratch.Scores + r * KeyBlock;
            scratch.RowRescale[r] = DecodeSoftmax<TOps, TVec>.Update(p, keyCount, ref scratch.RowMax[r], ref scratch.RowSum[r]);
            if (dropout != null) Drop(p, keyCount, dropout + r, rows.Count);
            if (valueScales != null) MultiplyRow(p, valueScales);
            if (probabilityFactor != 1) TensorPrimitives.Multiply(new ReadOnlySpan<float>(p, keyCount), probabilityFactor, new Span<float>(p, keyCount));
        }
    }

    /// <summary>
    /// O = O · rescale + P·V for every row over the block's keys [<paramref name="offset"/>, offset + <paramref
    /// name="count"/>), the rows' rescales in <see cref="CpuTileScratch.RowRescale"/>. Four rows share each loaded value
    /// vector where it is converted in the register (<see cref="SharesConversions{TElement}"/>): the same bits per row as
    /// one row at a time, as each output element sums the same products in the same order.
    /// </summary>
    private static void AccumulateValues<TValue>(in TileRows rows, int offset, int count, TValue* values, nint ldv, int dvPad, CpuTileScratch scratch)
        where TValue : unmanaged
    {
        int dvVectors = dvPad / TOps.Count, row = 0;
        float* p = scratch.Scores + offset;
        if (SharesConversions<TValue>())
            for (; row + 4 <= rows.Count; row += 4)
                DecodeValues<TOps, TVec>.AccumulateFourRows(p + row * KeyBlock, KeyBlock, count, values, ldv, dvVectors,
                    scratch.Output + row * dvPad, dvPad, scratch.RowRescale + row);
        for (; row < rows.Count; row++)
            DecodeValues<TOps, TVec>.Accumulate(p + row * KeyBlock, count, values, ldv, dvVectors, scratch.Output + row * dvPad, scratch.RowRescale[row]);
    }

    /// <summary>A block's per-token scales, contiguous, zero past <paramref name="keyCount"/> (a whole block is multiplied).</summary>
    private static void Gather(in Tensors.RawStrided4<float> scales, int batch, int kvHead, int firstKey, int keyCount, float* destination)
    {
        for (int j = 0; j < keyCount; j++) destination[j] = scales[batch, kvHead, firstKey + j, 0];
        for (int j = keyCount; j < KeyBlock; j++) destination[j] = 0;
    }

    /// <summary>A block row (<see cref="KeyBlock"/> floats) times per-key factors, in vectors (entries past the keys are overwritten later).</summary>
    private static void MultiplyRow(float* row, float* factors)
    {
        for (int j = 0; j < KeyBlock; j += TOps.Count)
            TOps.Store(row + j, TOps.Multiply(TOps.Load(row + j), TOps.Load(factors + j)));
    }

    /// <summary>One row's probabilities times its dropout multipliers, read down the [key][row] block (rows <paramref name="stride"/> apart).</summary>
    private static void Drop(float* probabilities, int keyCount, float* multipliers, int stride)
    {
        for (int j = 0; j < keyCount; j++) probabilities[j] *= multipliers[(nint)j * stride];
    }

    /// <summary>Queries of the KV head's rows, [rows][dPad], zero-padded.</summary>
    private static void LoadQueries(in CpuAttentionJob<T> job, int batch, in TileRows rows, int dPad, CpuTileScratch scratch)
    {
        var q = job.Q;
        for (int r = 0; r < rows.Count; r++)
        {
            float* row = scratch.QueryT + r * dPad;
            ElementConversion.ToSingle(&q.Base[q.Offset(batch, rows.Head(r), rows.Query(r), 0)], q.Stride3, job.HeadDim, row);
            for (int x = job.HeadDim; x < dPad; x++) row[x] = 0;
        }
    }

    /// <summary>Masked, scaled, biased scores S[r][j] of one key block; entries past keyCount up to a whole vector are −inf.</summary>
    private static void Scores(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int dPad, CpuTileScratch scratch,
        in FlexMods<TMask, TScore> mods, BlockKind kind, bool scaledKeys)
    {
        if (KeysInPlace(job))
        {
            var k = job.K;
            // Paged keys run by run (one run where they are not paged), each run's scores at its place in the block.
            for (long key = firstKey, end = firstKey + keyCount; key < end;)
            {
                int count = Run(job, batch, key, end, out long shift);
                T* keys = &k.Base[k.Offset(batch, rows.KvHead, (nint)(key + shift), 0)];
                float* scores = scratch.Scores + (key - firstKey);
                if (scaledKeys)
                    DecodeScores<TOps, TVec>.ComputeSharedKeys(scratch.QueryT, rows.Count, dPad, (ScaledFiniteHalf*)keys, k.Stride2, count, scores, KeyBlock);
                else if (SharesConversions<T>())
                    DecodeScores<TOps, TVec>.ComputeSharedKeys(scratch.QueryT, rows.Count, dPad, keys, k.Stride2, count, scores, KeyBlock);
                else
                    DecodeScores<TOps, TVec>.Compute(scratch.QueryT, rows.Count, dPad, keys, k.Stride2, count, scores, KeyBlock);
                key += count;
            }
        }
        else if (Int8InPlace(job.Int8.K, job.HeadDim))
        {
            // Dot products with the raw integers, then each key's scale: q · (s_j k_j) = s_j (q · k_j).
            var k = job.Int8.K;
            DecodeScores<TOps, TVec>.ComputeSharedKeys(scratch.QueryT, rows.Count, dPad, &k.Base[k.Offset(batch, rows.KvHead, firstKey, 0)], k.Stride2,
                keyCount, scratch.Scores, KeyBlock);
            float* keyScales = stackalloc float[KeyBlock];
            Gather(job.Int8.KScale, batch, rows.KvHead, firstKey, keyCount, keyScales);
            for (int r = 0; r < rows.Count; r++) MultiplyRow(scratch.Scores + r * KeyBlock, keyScales);
        }
        else
        {
            float* keys = TileStaging.Keys(job, batch, rows.KvHead, firstKey, keyCount, dPad, scratch, out nint keyPitch);
            DecodeScores<TOps, TVec>.Compute(scratch.QueryT, rows.Count, dPad, keys, keyPitch, keyCount, scratch.Scores, KeyBlock);
        }
        int paddedCount = Padded(keyCount);
        for (int r = 0; r < rows.Count; r++)
        {
            float* s = scratch.Scores + r * KeyBlock;
            BlockMasking.Scale<TOps, TVec>(s, paddedCount, job.Scale);
            for (int j = keyCount; j < paddedCount; j++) s[j] = float.NegativeInfinity;
        }
        var layout = ScoreLayout.RowMajor(KeyBlock);
        FlexMasking<TMask, TScore>.ScoreModsAndMasks(scratch.Scores, layout, firstKey, keyCount, rows, job, batch, mods, kind);
    }

    /// <summary>Weights pass: the blocks again, normalised with the rows' final max and sum (one split only).</summary>
    private static void WriteWeights(in CpuAttentionJob<T> job, int batch, in TileRows rows, int dPad, long keyBegin, long keyEnd, CpuTileScratch scratch,
        in FlexMods<TMask, TScore> mods, bool scaledKeys)
    {
        Epilogue.ClearWeights(job, batch, rows);
        int keyCount;
        for (long firstKey = keyBegin; firstKey < keyEnd; firstKey += keyCount)
        {
            keyCount = (int)Math.Min(KeyBlock, keyEnd - firstKey);
            if (job.Pages.IsActive) keyCount = job.Pages.KeysInRun(batch, firstKey, keyCount);
            var kind = FlexMasking<TMask, TScore>.TileKind(mods, batch, rows, (int)firstKey, keyCount);
            if (kind == BlockKind.Empty) continue;
            if (job.Pages.IsActive) Scores(job.Pages.At(job, batch, firstKey), batch, rows, (int)firstKey, keyCount, dPad, scratch, mods, kind, scaledKeys);
            else Scores(job, batch, rows, (int)firstKey, keyCount, dPad, scratch, mods, kind, scaledKeys);
            bool drop = job.WeightsAfterDropout && job.Dropout.IsActive;
            if (drop) TileDropout<TOps, TVec>.Draw(job, (int)firstKey, keyCount, rows.Count, scratch);
            for (int r = 0; r < rows.Count; r++)
            {
                DecodeSoftmax<TOps, TVec>.Normalize(scratch.Scores + r * KeyBlock, keyCount, scratch.RowMax[r], scratch.RowSum[r]);
                if (drop) Drop(scratch.Scores + r * KeyBlock, keyCount, scratch.Dropout + r, rows.Count);
            }
            Epilogue.WriteWeights(job, batch, rows, ScoreLayout.RowMajor(KeyBlock), (int)firstKey, keyCount, scratch.Scores);
        }
    }
}


