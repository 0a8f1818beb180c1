namespace AttentionEngine.Testing;

/// <summary>
/// How far one softmax row can move when every score s_j may be off by up to e_j (the fp32 rounding of
/// <see cref="NaivePrecision.ScoreRounding"/>), without assuming the errors small.
/// <para>
/// Why not first order alone: at scores near 1e31 (scale 1e30) fp32 rounds each score by about 1e25, more than the gap
/// between a row's two best keys can be. The softmax is then a hard arg-max and any fp32 kernel may pick either key,
/// yet the first-order terms (p_j·e_j) vanish for the key whose exact weight underflows. These bounds hold for errors
/// of any size and equal the first-order ones as the errors go to zero.
/// </para>
/// <para>
/// Two forms, both upper bounds. Rows whose largest error is at most <see cref="SmallError"/> (almost all) take closed
/// forms in the exact weights p_j, a few operations per key: a key whose p_j underflows there cannot reach a weight
/// above e^-744. Other rows take the log-sum-exps of the scores moved by their errors. (The log-sum-exps everywhere
/// made the ScoreRounding yardstick 15-60% slower, in every forward property test.)
/// </para>
/// </summary>
internal readonly struct ScoreErrorReach
{
    /// <summary>The largest error a row may have for the closed forms.</summary>
    public const double SmallError = 1e-3;

    // Small rows: delta bounds both Lse − LseLow and LseHigh − Lse, and growth = e^(delta + max e) the factors above
    // first order. Other rows: the exact log-sum-exp and its values with every score lowered / raised by its error.
    private readonly bool _small;
    private readonly double _firstOrder; // A = Σ p_k·e_k, the LSE's first-order reach (both forms)
    private readonly double _delta, _growth;
    private readonly double _lse, _lseLow, _lseHigh;

    private ScoreErrorReach(double firstOrder, double delta, double growth) =>
        (_small, _firstOrder, _delta, _growth) = (true, firstOrder, delta, growth);

    private ScoreErrorReach(double firstOrder, double lse, double low, double high) =>
        (_firstOrder, _lse, _lseLow, _lseHigh) = (firstOrder, lse, low, high);

    /// <summary>
    /// The reach of a row with at least one finite score (hidden keys hold -infinity and error 0), given its exact
    /// weights <paramref name="weights"/> (the softmax of <paramref name="scores"/>).
    /// </summary>
    public static ScoreErrorReach Of(ReadOnlySpan<double> scores, ReadOnlySpan<double> errors, ReadOnlySpan<double> weights)
    {
        double largest = 0, firstOrder = 0;
        for (int j = 0; j < scores.Length; j++)
        {
            largest = Math.Max(largest, errors[j]);
            firstOrder += weights[j] * errors[j];
        }
        if (largest <= SmallError)
        {
            // With A = Σ p_k·e_k: Lse − LseLow = −ln Σ p_k·e^(−e_k) ≤ −ln(1 − A) ≤ A / (1 − A), and
            // LseHigh − Lse = ln Σ p_k·e^(e_k) ≤ Σ p_k·(e^(e_k) − 1) ≤ A·e^(max e).
            double delta = firstOrder / (1 - firstOrder) * Math.Exp(largest);
            return new ScoreErrorReach(firstOrder, delta, Math.Exp(delta + largest));
        }
        return new ScoreErrorReach(firstOrder, LogSumExp(scores, errors, 0), LogSumExp(scores, errors, -1), LogSumExp(scores, errors, +1));
    }

    /// <summary>
    /// The LSE's reach: LseHigh − Lse, which by the convexity of log-sum-exp is at least both Lse − LseLow and the
    /// first-order A = Σ p_j·e_j (taken as a floor, so cancellation in the difference never drops below it).
    /// </summary>
    public double LseSlack() => _small ? Math.Max(_firstOrder, _delta) : Math.Max(_firstOrder, _lseHigh - _lse);

    /// <summary>
    /// The reach of weight p_j: any perturbed weight lies in [exp(s_j − e_j − LseHigh), min(1, exp(s_j + e_j − LseLow))];
    /// the larger distance from p_j, never below the first-order p_j·(e_j + A). Small rows: p_j·(e_j + delta)·e^(e_j + delta)
    /// bounds both distances.
    /// </summary>
    public double WeightSlack(double score, double error, double weight)
    {
        if (double.IsNegativeInfinity(score)) return 0;
        double firstOrder = weight * (error + _firstOrder);
        if (_small) return Math.Max(firstOrder, Math.Min(1.0, weight * (error + _delta) * _growth));
        double low = Math.Exp(score - error - _lseHigh), high = Math.Min(1.0, Math.Exp(score + error - _lseLow));
        return Math.Max(firstOrder, Math.Max(weight - low, high - weight));
    }

    /// <summary>
    /// Key j's coefficient in the output's reach. With w_j = m_j·v_j (m the dropout multiplier) and o = Σ p_j·w_j,
    /// Σ_j p_j·(w_j − o) = 0, so a perturbed output differs by e^(Lse − Lse')·Σ_j p_j·(e^(δ_j) − 1)·(w_j − o), |δ_j| ≤ e_j;
    /// hence |o' − o| ≤ Σ_j t_j·|w_j − o| with t_j = exp(s_j − LseLow)·(e^(e_j) − 1), which is p_j·e_j to first order
    /// (small rows: p_j·e_j·e^(delta + max e) bounds it). Infinite where the row's errors exceed its gaps; <see cref="NaiveAttention"/> then caps the sum by the largest
    /// |w_j − o| over the keys that can carry weight (the output stays a convex combination of their w_j).
    /// </summary>
    public double OutputCoefficient(double score, double error, double weight)
    {
        if (double.IsNegativeInfinity(score)) return 0;
        if (_small) return weight * error * _growth;
        double high = Math.Exp(score + error - _lseLow), exact = Math.Exp(score - _lseLow);
        // exp(s − LseLow)·(e^e − 1) keeps precision for small errors; the difference handles an exact part that underflows.
        if (double.IsPositiveInfinity(high)) return double.PositiveInfinity;
        double t = exact > 0 ? exact * ExpMinusOne(error) : high - exact;
        return Math.Max(t, weight * error);
    }

    /// <summary>
    /// e^x − 1 for x ≥ 0, never below the true value: x(1 + x) bounds it for small x. Not double.ExpM1, which .NET computes
    /// as Exp(x) − 1 (1.0000000827e-10 for 1e-10): it cancels there and can land below, and a bound must not.
    /// </summary>
    internal static double ExpMinusOne(double x) => x < 1e-3 ? x * (1 + x) : Math.Exp(x) - 1;

    /// <summary>
    /// Whether key j can carry any weight under the errors: its largest perturbed weight, exp(s_j + e_j − LseLow), is not
    /// below e^-746 (beyond double's range). Small rows: any visible key (the cap then spans a few more keys).
    /// </summary>
    public bool CanCarryWeight(double score, double error) =>
        !double.IsNegativeInfinity(score) && (_small || score + error - _lseLow > -746);

    private static double LogSumExp(ReadOnlySpan<double> scores, ReadOnlySpan<double> errors, int side)
    {
        double max = double.NegativeInfinity;
        for (int j = 0; j < scores.Length; j++)
            if (!double.IsNegativeInfinity(scores[j])) max = Math.Max(max, scores[j] + side * errors[j]);
        double sum = 0;
        for (int j = 0; j < scores.Length; j++)
            if (!double.IsNegativeInfinity(scores[j])) sum += Math.Exp(scores[j] + side * errors[j] - max);
        return max + Math.Log(sum);
    }
}
