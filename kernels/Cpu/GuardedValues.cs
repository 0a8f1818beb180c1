using System.Numerics.Tensors;
using AttentionEngine.Kernels.Cpu.Decode;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// O += P·V for the guarded pass, which a tile (or decode split) takes only when its fast pass ended with a non-finite
/// output. Two hazards make the fast GEMM wrong there, and both are handled per row, from what that row sees:
/// <list type="bullet">
/// <item>a hidden key's value holds NaN or ±infinity: the GEMM multiplies its probability 0 by it and gets NaN. The
/// block is copied with non-finite elements set to 0, and rows that do see such a key (probability ≠ 0) get the raw
/// element added back afterwards, so garbage in a visible position still propagates;</item>
/// <item>values of magnitude near the float range: the unnormalised sum Σ p·v overflows although the average O / l
/// is finite. A row that sees a value of magnitude ≥ 2^96 accumulates from then on at scale 2^-32 (its probabilities
/// and its accumulator are scaled by a power of two, exact), and the epilogue undoes the scale after dividing by l.</item>
/// </list>
/// A row that sees neither computes exactly the terms, in the same order, as the fast pass: its bits do not depend on
/// which pass ran, so poisoning keys a row cannot see changes no bit of that row.
/// </summary>
internal static unsafe class GuardedValues<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>2^96: with at most 2^31 keys of probability ≤ 1, smaller values never overflow the sum.</summary>
    public const float HugeValue = 7.9228163e28f;

    /// <summary>2^-32: the accumulator scale of a row that sees a huge value (2^31 · 2^128 · 2^-32 stays finite).</summary>
    public const float AccumulatorScale = 2.3283064e-10f;

    private const int Huge = 1, NonFinite = 2;

    /// <summary>The tile kernel's block: probabilities Pᵀ [keyCount][br] (rows along the lanes), accumulators [br][dvPad].</summary>
    public static void AccumulateTile<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int br,
        float* values, nint ldv, int dvPad, CpuTileScratch scratch) where T : unmanaged
    {
        var layout = ScoreLayout.Transposed(br);
        int any = Classify(values, ldv, keyCount, job.ValueDim, scratch.KeyFlags);
        bool scaled = StartScaling(scratch.Scores, layout, rows.Count, keyCount, any, scratch);
        if (scaled)
        {
            // Scaled rows' probabilities enter the GEMM at the row's scale (a vector multiply per key: rows are lanes).
            for (int j = 0; j < keyCount; j++)
            for (int v = 0; v < br; v += TOps.Count)
            {
                float* p = scratch.Scores + j * br + v;
                TOps.Store(p, TOps.Multiply(TOps.Load(p), TOps.Load(scratch.RowScale + v)));
            }
        }
        if ((any & NonFinite) != 0)
        {
            values = Sanitize(values, ldv, keyCount, job.ValueDim, dvPad, scratch);
            ldv = dvPad;
        }
        ValueGemm<TOps, TVec>.Accumulate(scratch.Scores, br, keyCount, values, ldv, dvPad / TOps.Count, scratch.Output, dvPad, scratch.RowRescale);
        if ((any & NonFinite) != 0) AddBackVisibleGarbage(job, batch, rows, firstKey, keyCount, layout, dvPad, scratch);
    }

    /// <summary>
    /// The decode kernel's block: probabilities S[r][j] (keys along the lanes, already turned into probabilities by
    /// the row's softmax step, with <paramref name="rescale"/> per row), values as floats [keyCount][dvPad].
    /// </summary>
    public static void AccumulateRows<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount, int keyBlock,
        float* values, nint ldv, int dvPad, float* rescale, CpuTileScratch scratch) where T : unmanaged
    {
        var layout = ScoreLayout.RowMajor(keyBlock);
        int any = Classify(values, ldv, keyCount, job.ValueDim, scratch.KeyFlags);
        bool scaled = StartScaling(scratch.Scores, layout, rows.Count, keyCount, any, scratch, rescale);
        if ((any & NonFinite) != 0)
        {
            values = Sanitize(values, ldv, keyCount, job.ValueDim, dvPad, scratch);
            ldv = dvPad;
        }
        for (int r = 0; r < rows.Count; r++)
        {
            float* p = scratch.Scores + r * keyBlock;
            float rowScale = scratch.RowScale[r];
            if (scaled && rowScale != 1)
                for (int j = 0; j < keyCount; j++) p[j] *= rowScale;
            DecodeValues<TOps, TVec>.Accumulate(p, keyCount, values, ldv, dvPad / TOps.Count, scratch.Output + r * dvPad, rescale[r]);
        }
        if ((any & NonFinite) != 0) AddBackVisibleGarbage(job, batch, rows, firstKey, keyCount, layout, dvPad, scratch);
    }

    /// <summary>Per key of the block: <see cref="Huge"/> when a value has magnitude ≥ 2^96, plus <see cref="NonFinite"/> when one is NaN or ±infinity.</summary>
    private static int Classify(float* values, nint ldv, int keyCount, int dv, int* flags)
    {
        int any = 0;
        for (int j = 0; j < keyCount; j++)
        {
            var row = new ReadOnlySpan<float>(values + j * ldv, dv);
            int flag = !TensorPrimitives.IsFiniteAll(row) ? Huge | NonFinite : TensorPrimitives.MaxMagnitude(row) >= HugeValue ? Huge : 0;
            flags[j] = flag;
            any |= flag;
        }
        return any;
    }

    /// <summary>
    /// Rows not yet scaled that see (probability ≠ 0) a key flagged huge switch to the scaled accumulator: its current
    /// contents are scaled through the rescale factor. Returns whether any row of the tile is scaled.
    /// </summary>
    private static bool StartScaling(float* probabilities, ScoreLayout layout, int rowCount, int keyCount, int any, CpuTileScratch scratch,
        float* rescale = null)
    {
        rescale = rescale == null ? scratch.RowRescale : rescale;
        bool scaled = false;
        for (int r = 0; r < rowCount; r++)
        {
            if (scratch.RowScale[r] == 1 && any != 0)
                for (int j = 0; j < keyCount; j++)
                    if (scratch.KeyFlags[j] != 0 && probabilities[layout[r, j]] != 0)
                    {
                        scratch.RowScale[r] = AccumulatorScale;
                        rescale[r] *= AccumulatorScale;
                        break;
                    }
            scaled |= scratch.RowScale[r] != 1;
        }
        return scaled;
    }

    /// <summary>The value block with non-finite elements replaced by 0, in the staged-values scratch (in place when already there).</summary>
    private static float* Sanitize(float* values, nint ldv, int keyCount, int dv, int dvPad, CpuTileScratch scratch)
    {
        for (int j = 0; j < keyCount; j++)
        {
            float* from = values + j * ldv, to = scratch.Values + j * dvPad;
            for (int c = 0; c < dv; c++) to[c] = float.IsFinite(from[c]) ? from[c] : 0f;
            for (int c = dv; c < dvPad; c++) to[c] = 0f;
        }
        return scratch.Values;
    }

    /// <summary>
    /// Rows that see a key with a non-finite value get its raw elements (read again from the caller's tensor) times
    /// their probability: NaN or infinity in a visible position is not hidden.
    /// </summary>
    private static void AddBackVisibleGarbage<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int firstKey, int keyCount,
        ScoreLayout layout, int dvPad, CpuTileScratch scratch) where T : unmanaged
    {
        var v = job.V;
        for (int j = 0; j < keyCount; j++)
        {
            if ((scratch.KeyFlags[j] & NonFinite) == 0) continue;
            T* row = &v.Base[v.Offset(batch, rows.KvHead, firstKey + j, 0)];
            for (int r = 0; r < rows.Count; r++)
            {
                float p = scratch.Scores[layout[r, j]];
                if (p == 0) continue;
                for (int c = 0; c < job.ValueDim; c++)
                {
                    float raw;
                    ElementConversion.ToSingle(row + c * v.Stride3, 1, 1, &raw);
                    if (!float.IsFinite(raw)) scratch.Output[r * dvPad + c] += p * raw;
                }
            }
        }
    }
}
