using System.Numerics.Tensors;
using AttentionEngine.Kernels.Cpu.Decode;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// O += P·V for the guarded pass, which a tile (or decode split) takes only when its fast pass ended with a non-finite
/// output. Two hazards make the fast GEMM wrong there:
/// <list type="bullet">
/// <item>a hidden key's value holds NaN or ±infinity: the GEMM multiplies its probability 0 by it and gets NaN. The
/// block is copied with non-finite elements set to 0, and rows that do see such a key (probability ≠ 0) get the raw
/// element added back afterwards, so garbage in a visible position still propagates;</item>
/// <item>values near the float range: the unnormalised sum Σ p·v overflows although the average O / l is finite.
/// Once a row sees (probability ≠ 0) a value of magnitude ≥ 2^96, that row accumulates at scale 2^-32 from then on:
/// its accumulators are scaled once, its terms take the value block scaled (powers of two, exact), and the epilogue
/// undoes the scale after dividing by l. The values are scaled, not the probabilities: a tiny probability times a
/// huge value still counts. The scale is per row, never per tile: a row that sees no huge value keeps its own terms
/// unscaled (scaled, its tiny terms could fall into the subnormal range and lose bits because another row met a
/// huge value).</item>
/// </list>
/// A row that sees neither hazard computes the same terms in the same order as the fast pass, so poisoning keys a row
/// cannot see changes no bit of that row. When some rows are scaled and others not, the block runs as two GEMMs over
/// the same accumulators, each with the other rows' probabilities zeroed: a zero term adds nothing (an FMA of 0 with a
/// finite value returns the accumulator), so each row still gets exactly its own terms in key order.
/// </summary>
internal static unsafe class GuardedValues<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>2^96: with at most 2^31 keys of probability ≤ 1, smaller values never overflow the sum.</summary>
    public const float HugeValue = 79228162514264337593543950336f;

    /// <summary>2^-32: a row's accumulator scale once it sees a huge value (2^31 · 2^128 · 2^-32 stays finite).</summary>
    public const float AccumulatorScale = 1f / 4294967296f;

    private const int Huge = 1, NonFinite = 2;

    /// <summary>The tile kernel's block: probabilities Pᵀ [keyCount][br] (rows along the lanes), accumulators [br][dvPad].</summary>
    public static void AccumulateTile<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int br,
        float* values, nint ldv, int dvPad, CpuTileScratch scratch) where T : unmanaged
    {
        var layout = ScoreLayout.Transposed(br);
        int any = Classify(values, ldv, keyCount, job.ValueDim, scratch.KeyFlags);
        ScaleRowsThatSeeHuge(layout, rows.Count, keyCount, any, scratch.RowRescale, scratch);
        int scaled = 0;
        for (int r = 0; r < rows.Count; r++) scaled += scratch.RowScale[r] != 1 ? 1 : 0;
        float* scaledValues = scaled > 0 ? ScaledCopy(values, ldv, keyCount, job.ValueDim, dvPad, scratch) : null;
        values = FiniteValues(values, ref ldv, keyCount, job.ValueDim, dvPad, any, scratch);
        int dvVectors = dvPad / TOps.Count;
        if (scaled == 0)
            ValueGemm<TOps, TVec>.Accumulate(scratch.Scores, br, keyCount, values, ldv, dvVectors, scratch.Output, dvPad, scratch.RowRescale);
        else
        {
            // Unscaled rows' terms with the unscaled block (scaled rows' probabilities zeroed; their rescale applies
            // here), then scaled rows' terms with the scaled block (the others' zeroed, no further rescale).
            float* unscaledP = scratch.Scores, scaledP = scratch.ScaledScores;
            new Span<float>(unscaledP, keyCount * br).CopyTo(new Span<float>(scaledP, keyCount * br));
            for (int j = 0; j < keyCount; j++)
            for (int r = 0; r < br; r++)
            {
                bool rowScaled = r < rows.Count && scratch.RowScale[r] != 1;
                (rowScaled ? unscaledP : scaledP)[j * br + r] = 0;
            }
            ValueGemm<TOps, TVec>.Accumulate(unscaledP, br, keyCount, values, ldv, dvVectors, scratch.Output, dvPad, scratch.RowRescale);
            ValueGemm<TOps, TVec>.Accumulate(scaledP, br, keyCount, scaledValues, dvPad, dvVectors, scratch.Output, dvPad, scratch.Ones);
            // The probabilities again, whole, for the rows' garbage below.
            for (int n = 0; n < keyCount * br; n++) unscaledP[n] += scaledP[n];
        }
        if ((any & NonFinite) != 0) AddBackVisibleGarbage(job, batch, rows, firstKey, keyCount, layout, dvPad, scratch);
    }

    /// <summary>
    /// The decode kernel's block: probabilities S[r][j] (keys along the lanes, already turned into probabilities by
    /// the rows' softmax steps, with <paramref name="rescale"/> per row), values as floats, rows <paramref name="ldv"/> apart.
    /// </summary>
    public static void AccumulateRows<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int keyBlock,
        float* values, nint ldv, int dvPad, float* rescale, CpuTileScratch scratch) where T : unmanaged
    {
        var layout = ScoreLayout.RowMajor(keyBlock);
        int any = Classify(values, ldv, keyCount, job.ValueDim, scratch.KeyFlags);
        ScaleRowsThatSeeHuge(layout, rows.Count, keyCount, any, rescale, scratch);
        bool scaled = false;
        for (int r = 0; r < rows.Count; r++) scaled |= scratch.RowScale[r] != 1;
        float* scaledValues = scaled ? ScaledCopy(values, ldv, keyCount, job.ValueDim, dvPad, scratch) : null;
        values = FiniteValues(values, ref ldv, keyCount, job.ValueDim, dvPad, any, scratch);
        for (int r = 0; r < rows.Count; r++)
        {
            bool rowScaled = scratch.RowScale[r] != 1;
            DecodeValues<TOps, TVec>.Accumulate(scratch.Scores + r * keyBlock, keyCount, rowScaled ? scaledValues : values, rowScaled ? dvPad : ldv,
                dvPad / TOps.Count, scratch.Output + r * dvPad, rescale[r]);
        }
        if ((any & NonFinite) != 0) AddBackVisibleGarbage(job, batch, rows, firstKey, keyCount, layout, dvPad, scratch);
    }

    /// <summary>
    /// Switches every row that first sees (probability ≠ 0) a huge value in this block to scaled accumulation: its
    /// accumulators so far join the scaled sum through this block's rescale factor.
    /// </summary>
    private static void ScaleRowsThatSeeHuge(ScoreLayout layout, int rowCount, int keyCount, int any, float* rescale, CpuTileScratch scratch)
    {
        if ((any & Huge) == 0) return;
        for (int r = 0; r < rowCount; r++)
        {
            if (scratch.RowScale[r] != 1) continue;
            for (int j = 0; j < keyCount; j++)
            {
                if ((scratch.KeyFlags[j] & Huge) == 0 || scratch.Scores[layout[r, j]] == 0) continue;
                scratch.RowScale[r] = AccumulatorScale;
                rescale[r] *= AccumulatorScale;
                break;
            }
        }
    }

    /// <summary>The block scaled by 2^-32 with non-finite elements zeroed, rows dvPad apart (read before any in-place copy).</summary>
    private static float* ScaledCopy(float* values, nint ldv, int keyCount, int dv, int dvPad, CpuTileScratch scratch)
    {
        NonFiniteRows.CopyFinite(values, ldv, keyCount, dv, scratch.ScaledValues, dvPad, AccumulatorScale);
        return scratch.ScaledValues;
    }

    /// <summary>The block itself, or (when it holds non-finite elements) a copy in the staged-values scratch with them zeroed.</summary>
    private static float* FiniteValues(float* values, ref nint ldv, int keyCount, int dv, int dvPad, int any, CpuTileScratch scratch)
    {
        if ((any & NonFinite) == 0) return values;
        NonFiniteRows.CopyFinite(values, ldv, keyCount, dv, scratch.Values, dvPad);
        ldv = dvPad;
        return scratch.Values;
    }

    /// <summary>Per key of the block: <see cref="Huge"/> when a value has magnitude ≥ 2^96, plus <see cref="NonFinite"/> when one is NaN or ±infinity.</summary>
    private static int Classify(float* values, nint ldv, int keyCount, int dv, int* flags)
    {
        int any = 0;
        for (int j = 0; j < keyCount; j++)
        {
            var row = new ReadOnlySpan<float>(values + j * ldv, dv);
            // MaxMagnitude returns the element itself, sign included: compare its absolute value.
            int flag = !TensorPrimitives.IsFiniteAll(row) ? Huge | NonFinite : MathF.Abs(TensorPrimitives.MaxMagnitude(row)) >= HugeValue ? Huge : 0;
            flags[j] = flag;
            any |= flag;
        }
        return any;
    }

    /// <summary>
    /// Rows that see a key with a non-finite value get its raw elements (read again from the caller's tensor) times
    /// their probability (and the tile's scale): NaN or infinity in a visible position is not hidden.
    /// </summary>
    private static void AddBackVisibleGarbage<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount,
        ScoreLayout layout, int dvPad, CpuTileScratch scratch) where T : unmanaged
    {
        for (int j = 0; j < keyCount; j++)
        {
            if ((scratch.KeyFlags[j] & NonFinite) == 0) continue;
            for (int r = 0; r < rows.Count; r++)
            {
                float p = scratch.Scores[layout[r, j]];
                if (p == 0) continue;
                for (int c = 0; c < job.ValueDim; c++)
                {
                    float raw = KeyValueRows.ValueElement(job, batch, rows.KvHead, firstKey + j, c);
                    if (!float.IsFinite(raw)) scratch.Output[r * dvPad + c] += p * raw;
                }
            }
        }
    }
}
