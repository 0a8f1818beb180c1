namespace AttentionEngine.Kernels.Quantization;

/// <summary>
/// The quantisation of int8 scores (<c>ScorePrecision.Int8</c>), written once: the CPU kernel quantises with it (keys
/// here, query tiles in vectors that perform the same IEEE operations lane by lane) and the oracles quantise with it, so
/// the kernel's integers are the oracle's integers and the kernel is checked against the exact result of its own
/// quantised inputs.
/// <list type="bullet">
/// <item>A row x of n floats: a = max |x_c|; scale s = a / 127; x8_c = clamp(round_even(x_c · (127 / a)), ±127)
/// (all zeros when a = 0). The row is usable when a ≤ <see cref="Limit"/> (false for NaN and infinity).</item>
/// <item>A block of keys (64 from a multiple of 64, the last one shorter): mean μ_c = (Σ_j k_jc) / count in key order;
/// each key row k_j − μ quantised as above. The block is usable when μ and every smoothed row are.</item>
/// </list>
/// With every magnitude at most 2^40 (and |s_q · scale| at most 2^40) no rebuilt score overflows the float range.
/// </summary>
internal static unsafe class Int8ScoreQuantizer
{
    /// <summary>Largest magnitude quantised (2^40): larger values, NaN and infinity take the exact float path.</summary>
    public const float Limit = 1099511627776f;

    /// <summary>Keys per smoothing block (the CPU kernel's key block).</summary>
    public const int KeyBlock = Cpu.CpuKeyBlock.Keys;

    /// <summary>Quantises <paramref name="count"/> floats into int16 lanes holding int8 values; false when out of range.</summary>
    public static bool QuantizeRow(float* x, int count, short* quantized, out float scale)
    {
        float max = 0;
        for (int c = 0; c < count; c++) max = MathF.Max(max, MathF.Abs(x[c])); // MathF.Max propagates NaN
        scale = max / 127f;
        if (!(max <= Limit)) return false;
        float inverse = max > 0 ? 127f / max : 0f;
        for (int c = 0; c < count; c++) quantized[c] = (short)Math.Clamp(MathF.Round(x[c] * inverse), -127f, 127f);
        return true;
    }

    /// <summary>
    /// Smooths and quantises a block of <paramref name="count"/> key rows (<paramref name="dim"/> floats each, rows
    /// <paramref name="pitch"/> apart; overwritten with the smoothed rows) into rows of <paramref name="paddedDim"/>
    /// int16 lanes (zero beyond dim), per-key scales and the block mean; false when the block is out of range.
    /// </summary>
    public static bool QuantizeKeyBlock(float* keys, nint pitch, int count, int dim, float* mean, short* quantized, int paddedDim, float* scales)
    {
        for (int c = 0; c < dim; c++)
        {
            float sum = 0;
            for (int j = 0; j < count; j++) sum += keys[j * pitch + c];
            mean[c] = sum / count;
            if (!(MathF.Abs(mean[c]) <= Limit)) return false;
        }
        for (int j = 0; j < count; j++)
        {
            float* row = keys + j * pitch;
            for (int c = 0; c < dim; c++) row[c] -= mean[c];
            short* target = quantized + (long)j * paddedDim;
            if (!QuantizeRow(row, dim, target, out scales[j])) return false;
            for (int c = dim; c < paddedDim; c++) target[c] = 0;
        }
        return true;
    }

    /// <summary>Whether a usable query row of scale <paramref name="rowScale"/> stays usable at softmax scale <paramref name="scale"/>.</summary>
    public static bool QueryScaleUsable(float rowScale, float scale) => MathF.Abs(rowScale * scale) <= Limit;

    /// <summary>
    /// The whole rule for a query row with max |q| = <paramref name="max"/>, as <see cref="QuantizeRow"/> followed by
    /// <see cref="QueryScaleUsable"/> applies it (for a caller that found the maximum itself, in vectors).
    /// </summary>
    public static bool QueryUsable(float max, float scale) => max <= Limit && QueryScaleUsable(max / 127f, scale);

    /// <summary>The int16 lanes of a head dimension: rounded up to whole pairs (the integer dot product takes pairs).</summary>
    public static int PaddedDim(int dim) => (dim + 1) & ~1;
}
