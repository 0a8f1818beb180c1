using AttentionEngine.Kernels.Quantization;

namespace AttentionEngine;

/// <summary>
/// The oracle: attention by its definition, in float64, one query row at a time with the whole score row
/// materialised. Slow on purpose and obviously right; it defines the semantics every backend reproduces:
/// <list type="bullet">
/// <item>score(i, j) = scale · (q_i · k_j) + bias(i, j), each step saturated to the float range as
/// <see cref="ScoreSaturation"/> defines; key j is visible to query i when the positional mask, the keep-mask and a
/// bias other than -infinity all allow it (a hidden key never influences the row, whatever its K, V or bias hold);</item>
/// <item>output_i = Σ_j softmax_j(score) · v_j over visible keys; LSE_i = ln Σ_j exp(score(i, j));</item>
/// <item>with dropout, output_i = Σ_j softmax_j(score) · m_ij · v_j, m_ij = 1 / (1 − p) where
/// <see cref="AttentionDropout.IsKept"/> and 0 where not (a dropped key's V is never read); LSE is unchanged;</item>
/// <item>a row with no visible key outputs zeros, weights zero and LSE -infinity (never NaN).</item>
/// </list>
/// NaN or +infinity in the inputs propagate to the rows they touch: garbage in is not hidden.
/// With <see cref="ScorePrecision.Int8"/> the dot product of a row and a key block it wholly sees is that of the quantised
/// inputs (<see cref="Int8ScoreOracle{T}"/>), computed exactly; everything else is as above.
/// </summary>
public static unsafe class ReferenceAttention
{
    /// <summary>Computes a validated call in float64 without writing its destinations.</summary>
    public static AttentionResult Compute<T>(scoped in AttentionCall<T> call, bool withWeights = false) where T : unmanaged =>
        Compute(call, withWeights, null);

    /// <summary>The same, with a block mask and score functor applied pair by pair (slowly, by definition).</summary>
    internal static AttentionResult Compute<T>(scoped in AttentionCall<T> call, bool withWeights, IPairFunctors? functors) where T : unmanaged
    {
        var shape = call.Shape;
        var result = new AttentionResult(
            shape,
            new double[checked((long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.ValueDim)],
            new double[checked((long)shape.Batch * shape.QueryHeads * shape.QueryLength)],
            withWeights ? new double[checked((long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.KeyLength)] : null);

        // Worker threads cannot hold ref structs: the inputs are pinned for the (synchronous) parallel loop.
        PinnedCall<T>.Pin(call, pinned =>
        {
            var int8 = pinned.ScorePrecision == ScorePrecision.Int8 ? new Int8ScoreOracle<T>(pinned) : null;
            Parallel.For(0, shape.Batch * shape.QueryHeads, head =>
                ComputeHead(pinned, head / shape.QueryHeads, head % shape.QueryHeads, result, int8));
        }, functors);
        return result;
    }

    private static void ComputeHead<T>(
        PinnedCall<T> inputs, int b, int h, AttentionResult result, Int8ScoreOracle<T>? int8) where T : unmanaged
    {
        var shape = inputs.Shape;
        int lk = shape.KeyLength, d = shape.HeadDim, dv = shape.ValueDim;
        int kvHead = h / shape.GroupSize;
        var keys = new double[lk * d];
        var values = new double[lk * dv];
        for (int j = 0; j < lk; j++)
        {
            for (int c = 0; c < d; c++) keys[j * d + c] = inputs.KeyAt(b, kvHead, j, c);
            for (int c = 0; c < dv; c++) values[j * dv + c] = inputs.ValueAt(b, kvHead, j, c);
        }

        var query = new double[d];
        var scores = new double[lk];
        var visible = new bool[lk];
        for (int i = 0; i < shape.QueryLength; i++)
        {
            long row = ((long)b * shape.QueryHeads + h) * shape.QueryLength + i;
            for (int c = 0; c < d; c++) query[c] = ElementTypes.ToDouble(inputs.Q[b, h, i, c]);

            // Scores block by block: with int8 scores a row takes a block's quantised scores only when it sees every key
            // of the block under them (the block's quantisation depends on all its keys), else its float scores.
            for (int first = 0; first < lk; first += Int8ScoreQuantizer.KeyBlock)
            {
                int end = Math.Min(lk, first + Int8ScoreQuantizer.KeyBlock);
                bool quantized = int8 is not null && int8.Usable(b, h, i, first / Int8ScoreQuantizer.KeyBlock);
                if (!quantized || !Scores(quantized: true))
                    Scores(quantized: false);

                // The block's scores and visibility; true when every key of it is visible.
                bool Scores(bool quantized)
                {
                    bool all = true;
                    for (int j = first; j < end; j++)
                    {
                        visible[j] = inputs.IsAllowed(b, h, i, j);
                        if (!visible[j]) { all = false; continue; }
                        double dot = 0;
                        if (quantized) dot = int8!.Dot(inputs, b, h, i, j, out _);
                        else for (int c = 0; c < d; c++) dot += query[c] * keys[j * d + c];
                        // A -inf bias (or a functor's -inf) hides the key whatever its K holds; other scores saturate to the float range.
                        double score = ScoreSaturation.AddBias(inputs.ScaledScore(dot, b, h, i, j), inputs.BiasAt(b, h, i, j));
                        if (double.IsNegativeInfinity(score)) { visible[j] = false; all = false; continue; }
                        scores[j] = score;
                    }
                    return all;
                }
            }
            double max = double.NegativeInfinity;
            bool anyVisible = false;
            for (int j = 0; j < lk; j++)
            {
                if (!visible[j]) continue;
                anyVisible = true;
                max = Math.Max(max, scores[j]); // Math.Max propagates NaN, so garbage inputs stay visible
            }

            var outputRow = result.Output.AsSpan((int)(row * dv), dv);
            var weightsRow = result.Weights is null ? Span<double>.Empty : result.Weights.AsSpan((int)(row * lk), lk);
            if (!anyVisible)
            {
                result.Lse[row] = double.NegativeInfinity; // output and weights stay zero
                continue;
            }

            double sum = 0;
            for (int j = 0; j < lk; j++)
            {
                scores[j] = visible[j] ? Math.Exp(scores[j] - max) : 0.0;
                sum += scores[j];
            }
            for (int j = 0; j < lk; j++)
            {
                if (!visible[j]) continue;
                double p = scores[j] / sum;
                // Dropout scales the probability after the softmax; a dropped key's V is never read.
                double factor = inputs.DropoutFactor(b, h, i, j), dropped = p * factor;
                if (factor != 0)
                    for (int c = 0; c < dv; c++) outputRow[c] += dropped * values[j * dv + c];
                if (!weightsRow.IsEmpty) weightsRow[j] = inputs.Dropout.InWeights ? dropped : p;
            }
            result.Lse[row] = max + Math.Log(sum);
        }
    }
}
