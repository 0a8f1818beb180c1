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
/// </summary>
internal readonly struct ScoreErrorReach
{
    /// <summary>The exact log-sum-exp of the row, and its values with every score lowered / raised by its error.</summary>
    public readonly double Lse, LseLow, LseHigh;

    private ScoreErrorReach(double lse, double low, double high) => (Lse, LseLow, LseHigh) = (lse, low, high);

    /// <summary>The reach of a row with at least one finite score (hidden keys hold -infinity and error 0).</summary>
    public static ScoreErrorReach Of(ReadOnlySpan<double> scores, ReadOnlySpan<double> errors) =>
        new(LogSumExp(scores, errors, 0), LogSumExp(scores, errors, -1), LogSumExp(scores, errors, +1));

    /// <summary>
    /// The LSE's reach: LseHigh − Lse, which by the convexity of log-sum-exp is at least both Lse − LseLow and the
    /// first-order Σ p_j·e_j (passed in, so cancellation in the difference never drops below it).
    /// </summary>
    public double LseSlack(double firstOrder) => Math.Max(firstOrder, LseHigh - Lse);

    /// <summary>
    /// The reach of weight p_j: any perturbed weight lies in [exp(s_j − e_j − LseHigh), min(1, exp(s_j + e_j − LseLow))];
    /// the larger distance from p_j, never below the first-order <paramref name="firstOrder"/>.
    /// </summary>
    public double WeightSlack(double score, double error, double weight, double firstOrder)
    {
        if (double.IsNegativeInfinity(score)) return 0;
        double low = Math.Exp(score - error - LseHigh), high = Math.Min(1.0, Math.Exp(score + error - LseLow));
        return Math.Max(firstOrder, Math.Max(weight - low, high - weight));
    }

    /// <summary>
    /// Key j's coefficient in the output's reach. With w_j = m_j·v_j (m the dropout multiplier) and o = Σ p_j·w_j,
    /// Σ_j p_j·(w_j − o) = 0, so a perturbed output differs by e^(Lse − Lse')·Σ_j p_j·(e^(δ_j) − 1)·(w_j − o), |δ_j| ≤ e_j;
    /// hence |o' − o| ≤ Σ_j t_j·|w_j − o| with t_j = exp(s_j − LseLow)·(e^(e_j) − 1), which is p_j·e_j to first order.
    /// Infinite where the row's errors exceed its gaps; <see cref="NaiveAttention"/> then caps the sum by the largest
    /// |w_j − o| over the keys that can carry weight (the output stays a convex combination of their w_j).
    /// </summary>
    public double OutputCoefficient(double score, double error, double weight)
    {
        if (double.IsNegativeInfinity(score)) return 0;
        double high = Math.Exp(score + error - LseLow), exact = Math.Exp(score - LseLow);
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

    /// <summary>Whether key j can carry any weight under the errors (its largest perturbed weight is not 0).</summary>
    public bool CanCarryWeight(double score, double error) =>
        !double.IsNegativeInfinity(score) && Math.Exp(score + error - LseLow) > 0;

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
