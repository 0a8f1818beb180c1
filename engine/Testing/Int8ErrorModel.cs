namespace AttentionEngine.Testing;

/// <summary>
/// The error model of int8 keys and values with symmetric per-token scales (<see cref="QuantizedTensor"/>), as a bound
/// the property tests check against, from the scales alone (no fitted epsilon).
/// <para>
/// Quantising a row with scale s moves each element by at most s/2. For query row i, key j's score moves by at most
/// δ_j = |scale| · (s^k_j / 2) · Σ_c |q_ic|, and Δ = max δ_j over the visible keys. The softmax then moves each
/// probability by a factor in [e^(−2Δ), e^(2Δ)], so |p̂_j − p_j| ≤ p_j (e^(2Δ) − 1); since both sum to one,
/// ô_c − o_c = Σ_j (p̂_j − p_j)(v_jc − o_c) + Σ_j p̂_j (v̂_jc − v_jc), and
/// </para>
/// <para><c>|ô_c − o_c| ≤ (e^(2Δ) − 1) · Σ_j p_j |v_jc − o_c| + max_j s^v_j / 2</c> (visible j).</para>
/// <para>
/// The bound is rigorous for the exact (float64) attention of the dequantised inputs; a kernel adds its own rounding,
/// which <see cref="ToleranceRule"/> bounds separately against that exact result.
/// </para>
/// </summary>
public static class Int8ErrorModel
{
    /// <summary>
    /// The bound of every output element, [B, Hq, Lq, Dv] row-major, of <paramref name="problem"/> with int8 scores
    /// (<see cref="ScorePrecision.Int8"/>) against its exact float64 attention: the same softmax argument as
    /// <see cref="OutputBound{T}"/>, with δ_j the score bound of the quantised queries and smoothed keys (per pair
    /// s_k/2·‖q‖₁ + s_q/2·‖k − mean‖₁ + 3·D·s_q·s_k/4, times |scale|) and no value error. Pairs the oracle scores in
    /// float count with their int8 bound too (a looser bound, still a bound). The problem must carry no dropout.
    /// </summary>
    public static double[] ScoreOutputBound<T>(AttentionProblem<T> problem) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (problem.Dropout.IsActive) throw new ArgumentException("the error model covers calls without dropout.", nameof(problem));
        var s = problem.Shape;
        var visible = problem.Visibility();
        var oracle = problem.Oracle();
        var bound = new double[oracle.Output.Length];
        using var scratch = problem.AllocateOutput();
        var call = AttentionValidator.Validate<T>(problem.Q, problem.K, problem.V, scratch, problem.Options() with { ScorePrecision = ScorePrecision.Int8 });
        PinnedCall<T>.Pin(call, pinned =>
        {
            var int8 = new Int8ScoreOracle<T>(pinned);
            var p = new double[s.KeyLength];
            foreach (var (b, h, i, kvHead, row, lse) in RowsWithVisibleKeys(s, oracle))
            {
                double delta = 0;
                for (int j = 0; j < s.KeyLength; j++)
                {
                    p[j] = 0;
                    if (!visible[row * s.KeyLength + j]) continue;
                    double dot = 0;
                    for (int c = 0; c < s.HeadDim; c++) dot += ElementTypes.ToDouble(pinned.Q[b, h, i, c]) * pinned.KeyAt(b, kvHead, j, c);
                    p[j] = Math.Exp(ScoreSaturation.AddBias(pinned.ScaledScore(dot, b, h, i, j), pinned.BiasAt(b, h, i, j)) - lse);
                    if (int8.Usable(b, h, i, j / Int8ScoreOracle<T>.KeyBlock)) delta = Math.Max(delta, int8.ScoreErrorBound(pinned, b, h, i, j));
                }
                WriteRowBound(bound, oracle.Output, row, s, p, delta, 0, (j, c) => pinned.ValueAt(b, kvHead, j, c));
            }
        });
        return bound;
    }

    /// <summary>Every row (b, h, i) with a visible key, with its KV head, flat index and exact LSE.</summary>
    private static IEnumerable<(int B, int H, int I, int KvHead, long Row, double Lse)> RowsWithVisibleKeys(AttentionShape s, AttentionResult oracle)
    {
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        {
            long row = ((long)b * s.QueryHeads + h) * s.QueryLength + i;
            if (!double.IsNegativeInfinity(oracle.Lse[row])) yield return (b, h, i, h / s.GroupSize, row, oracle.Lse[row]);
        }
    }

    /// <summary>
    /// One row's bounds: (e^(2Δ) − 1) · Σ_j p_j |v_jc − o_c| + the value error, for every output element c of the row
    /// (p_j the exact probabilities of the visible keys, 0 elsewhere).
    /// </summary>
    private static void WriteRowBound(double[] bound, double[] output, long row, AttentionShape s, double[] p, double delta, double valueError,
        Func<int, int, double> value)
    {
        double growth = Math.Exp(2 * delta) - 1;
        for (int c = 0; c < s.ValueDim; c++)
        {
            double o = output[row * s.ValueDim + c], spread = 0;
            for (int j = 0; j < s.KeyLength; j++)
                if (p[j] != 0) spread += p[j] * Math.Abs(value(j, c) - o);
            bound[row * s.ValueDim + c] = growth * spread + valueError;
        }
    }

    /// <summary>
    /// The bound of every output element, [B, Hq, Lq, Dv] row-major, for <paramref name="problem"/>'s keys and values
    /// quantised into <paramref name="k"/> and <paramref name="v"/> (their scales are what the bound is made of).
    /// Rows with no visible key have bound 0. The problem must carry no dropout.
    /// </summary>
    public static double[] OutputBound<T>(AttentionProblem<T> problem, QuantizedTensor k, QuantizedTensor v) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        if (problem.Dropout.IsActive) throw new ArgumentException("the error model covers calls without dropout.", nameof(problem));
        var s = problem.Shape;
        var visible = problem.Visibility();
        var oracle = problem.Oracle();
        double scale = Math.Abs(problem.Scale ?? 1.0 / Math.Sqrt(s.HeadDim));
        using var bias = problem.Bias is null ? null : problem.FullBias();
        var bound = new double[oracle.Output.Length];
        var p = new double[s.KeyLength];
        foreach (var (b, h, i, kvHead, row, lse) in RowsWithVisibleKeys(s, oracle))
        {
            double qNorm = 0;
            for (int c = 0; c < s.HeadDim; c++) qNorm += Math.Abs(ElementTypes.ToDouble(problem.Q[b, h, i, c]));
            double delta = 0, valueError = 0;
            for (int j = 0; j < s.KeyLength; j++)
            {
                p[j] = 0;
                if (!visible[row * s.KeyLength + j]) continue;
                double dot = 0;
                for (int c = 0; c < s.HeadDim; c++)
                    dot += ElementTypes.ToDouble(problem.Q[b, h, i, c]) * ElementTypes.ToDouble(problem.K[b, kvHead, j, c]);
                double score = ScoreSaturation.AddBias(ScoreSaturation.Saturate(dot * (problem.Scale ?? 1.0 / Math.Sqrt(s.HeadDim))),
                    bias is null ? 0 : bias[b, h, i, j]);
                p[j] = Math.Exp(score - lse);
                delta = Math.Max(delta, scale * k.Scales[b, kvHead, j] / 2 * qNorm);
                valueError = Math.Max(valueError, v.Scales[b, kvHead, j] / 2.0);
            }
            WriteRowBound(bound, oracle.Output, row, s, p, delta, valueError, (j, c) => ElementTypes.ToDouble(problem.V[b, kvHead, j, c]));
        }
        return bound;
    }
}
