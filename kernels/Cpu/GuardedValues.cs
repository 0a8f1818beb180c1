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
/// Once some row sees (probability ≠ 0) a value of magnitude ≥ 2^96, the tile accumulates at scale 2^-32 from then
/// on: its accumulators are scaled once and the value blocks enter the GEMM scaled (powers of two, exact), and the
/// epilogue undoes the scale after dividing by l. The values are scaled, not the probabilities: a tiny probability
/// times a huge value still counts, and scaling is exact for every value above 2^-94.</item>
/// </list>
/// A row that sees neither hazard computes the same terms in the same order as the fast pass (scaled by an exact power
/// of two when the tile is), so poisoning keys a row cannot see changes no bit of that row.
/// </summary>
internal static unsafe class GuardedValues<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>2^96: with at most 2^31 keys of probability ≤ 1, smaller values never overflow the sum.</summary>
    public const float HugeValue = 79228162514264337593543950336f;

    /// <summary>2^-32: the accumulator scale once huge values are seen (2^31 · 2^128 · 2^-32 stays finite).</summary>
    public const float AccumulatorScale = 1f / 4294967296f;

    private const int Huge = 1, NonFinite = 2;

    /// <summary>The tile kernel's block: probabilities Pᵀ [keyCount][br] (rows along the lanes), accumulators [br][dvPad].</summary>
    public static void AccumulateTile<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int br,
        float* values, nint ldv, int dvPad, CpuTileScratch scratch) where T : unmanaged
    {
        var layout = ScoreLayout.Transposed(br);
        values = Prepare(job, rows, keyCount, layout, br, values, ref ldv, dvPad, scratch.RowRescale, scratch, out int any);
        ValueGemm<TOps, TVec>.Accumulate(scratch.Scores, br, keyCount, values, ldv, dvPad / TOps.Count, scratch.Output, dvPad, scratch.RowRescale);
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
        values = Prepare(job, rows, keyCount, layout, rows.Count, values, ref ldv, dvPad, rescale, scratch, out int any);
        for (int r = 0; r < rows.Count; r++)
            DecodeValues<TOps, TVec>.Accumulate(scratch.Scores + r * keyBlock, keyCount, values, ldv, dvPad / TOps.Count, scratch.Output + r * dvPad, rescale[r]);
        if ((any & NonFinite) != 0) AddBackVisibleGarbage(job, batch, rows, firstKey, keyCount, layout, dvPad, scratch);
    }

    /// <summary>
    /// Classifies the block, switches the tile to scaled accumulation when a row first sees a huge value, and returns
    /// the values the GEMM may use: the block itself, or a copy in the staged-values scratch with non-finite elements
    /// zeroed and (in a scaled tile) every element scaled.
    /// </summary>
    private static float* Prepare<T>(in CpuAttentionJob<T> job, in TileRows rows, int keyCount, ScoreLayout layout, int lanes, float* values,
        ref nint ldv, int dvPad, float* rescale, CpuTileScratch scratch, out int any) where T : unmanaged
    {
        any = Classify(values, ldv, keyCount, job.ValueDim, scratch.KeyFlags);
        if (scratch.RowScale[0] == 1 && (any & Huge) != 0 && SomeRowSeesHuge(scratch.Scores, layout, rows.Count, keyCount, scratch.KeyFlags))
        {
            // The accumulators so far join the scaled sum through this block's rescale factor.
            for (int r = 0; r < lanes; r++)
            {
                scratch.RowScale[r] = AccumulatorScale;
                rescale[r] *= AccumulatorScale;
            }
        }
        float scale = scratch.RowScale[0];
        if (scale == 1 && (any & NonFinite) == 0) return values;
        NonFiniteRows.CopyFinite(values, ldv, keyCount, job.ValueDim, scratch.Values, dvPad, scale);
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

    /// <summary>Whether a valid row has probability ≠ 0 at a key flagged huge (what only hidden keys hold never counts).</summary>
    private static bool SomeRowSeesHuge(float* probabilities, ScoreLayout layout, int rowCount, int keyCount, int* flags)
    {
        for (int j = 0; j < keyCount; j++)
        {
            if ((flags[j] & Huge) == 0) continue;
            for (int r = 0; r < rowCount; r++)
                if (probabilities[layout[r, j]] != 0) return true;
        }
        return false;
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
                    float raw = NonFiniteRows.Element(job.V, batch, rows.KvHead, firstKey + j, c);
                    if (!float.IsFinite(raw)) scratch.Output[r * dvPad + c] += p * raw;
                }
            }
        }
    }
}
