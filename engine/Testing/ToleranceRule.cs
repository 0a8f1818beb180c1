namespace AttentionEngine.Testing;

/// <summary>
/// The one tolerance rule (after FlashAttention's tests): a candidate passes when
/// <c>max|candidate − oracle| ≤ factor · max|naive − oracle| + floor</c>, where the oracle is float64 and "naive" is the
/// textbook formula in the candidate's storage type (<see cref="NaivePrecision.Storage"/>, and where given the
/// inherent fp32 score-rounding error, <see cref="NaivePrecision.ScoreRounding"/>, taking the worse). A kernel may be as inaccurate as an honest plain implementation in its own
/// precision, times two, and no worse.
/// </summary>
public static class ToleranceRule
{
    /// <summary>Factor for forward outputs.</summary>
    public const double ForwardFactor = 2.0;

    /// <summary>Factor for gradients (FlashAttention's tests allow 3x there).</summary>
    public const double GradientFactor = 3.0;

    /// <summary>
    /// The absolute floor, at the oracle's scale: two units of the storage type's precision, but never below 2^-20
    /// (about 8 float ulps). In float storage a kernel and the naive formula round alike, and on ill-conditioned rows
    /// (logits in the thousands, outliers) a 1-ulp difference in one score moves the output by many ulps; the naive
    /// result can land luckily close, so "2 x naive" alone would fail honest fp32 kernels at random. For Half and
    /// BFloat16 the 2-unit term is the larger and the floor stays negligible next to the naive error.
    /// </summary>
    public static double Floor<T>(double oracleScale) =>
        Math.Max(2 * ElementTypes.MachineEpsilon<T>(), Math.ScaleB(1.0, -20)) * Math.Max(1.0, oracleScale);

    /// <summary>Compares element-wise results (any layout, the same for all three).</summary>
    public static ToleranceReport Check<T>(
        ReadOnlySpan<double> candidate, ReadOnlySpan<double> oracle, ReadOnlySpan<double> naive, double factor = ForwardFactor) =>
        Check<T>(candidate, oracle, naive, ReadOnlySpan<double>.Empty, factor);

    /// <summary>
    /// Compares element-wise results against the worse of two naive realisations (<see cref="NaivePrecision.Storage"/>
    /// and <see cref="NaivePrecision.ScoreRounding"/>); an empty second one is ignored.
    /// </summary>
    public static ToleranceReport Check<T>(
        ReadOnlySpan<double> candidate, ReadOnlySpan<double> oracle, ReadOnlySpan<double> naive, ReadOnlySpan<double> otherNaive,
        double factor = ForwardFactor)
    {
        if (candidate.Length != oracle.Length || naive.Length != oracle.Length || !otherNaive.IsEmpty && otherNaive.Length != oracle.Length)
            throw new ArgumentException(
                $"Lengths differ: candidate {candidate.Length}, oracle {oracle.Length}, naive {naive.Length}, other naive {otherNaive.Length}.", nameof(candidate));
        double scale = 0;
        foreach (double value in oracle)
            if (double.IsFinite(value)) scale = Math.Max(scale, Math.Abs(value));

        double maxError = 0, naiveError = 0;
        long worst = -1;
        for (int i = 0; i < oracle.Length; i++)
        {
            double error = Difference<T>(candidate[i], oracle[i]);
            if (error > maxError || double.IsNaN(error)) { maxError = double.IsNaN(error) ? double.PositiveInfinity : error; worst = i; }
            naiveError = Math.Max(naiveError, Difference<T>(naive[i], oracle[i]));
            if (!otherNaive.IsEmpty) naiveError = Math.Max(naiveError, Difference<T>(otherNaive[i], oracle[i]));
        }
        double floor = Floor<T>(scale);
        // A naive result that is itself non-finite where the oracle is finite gives no yardstick: fall back to the floor
        // rather than allowing anything.
        double allowed = factor * (double.IsFinite(naiveError) ? naiveError : 0) + floor;
        return new ToleranceReport(maxError, naiveError, floor, allowed, worst, maxError <= allowed);
    }

    /// <summary>
    /// |a − b|, with equal infinities (LSE of hidden rows) counting as exact and any NaN mismatch as infinite. An infinite
    /// <paramref name="a"/> is exact where the oracle <paramref name="b"/> lies beyond the range of <typeparamref name="T"/>:
    /// the correctly rounded value there is that infinity (a gradient of 1e5 stored as Half).
    /// </summary>
    private static double Difference<T>(double a, double b)
    {
        if (a.Equals(b)) return 0; // covers -inf == -inf and NaN == NaN (garbage propagated the same way)
        if (double.IsInfinity(a) && double.IsFinite(b) && ElementTypes.RoundTo<T>(b).Equals(a)) return 0;
        double d = Math.Abs(a - b);
        return double.IsNaN(d) ? double.PositiveInfinity : d;
    }
}

/// <summary>The outcome of the tolerance rule (<see cref="ToleranceRule"/>).</summary>
/// <param name="MaxError">max|candidate − oracle|</param>
/// <param name="NaiveMaxError">max|naive − oracle|</param>
/// <param name="Floor">the absolute floor used</param>
/// <param name="Allowed">factor · NaiveMaxError + Floor</param>
/// <param name="WorstIndex">flat index of the largest error (-1 when exact)</param>
/// <param name="Passed">MaxError ≤ Allowed</param>
public readonly record struct ToleranceReport(
    double MaxError, double NaiveMaxError, double Floor, double Allowed, long WorstIndex, bool Passed)
{
    /// <summary>MaxError / Allowed: below 1 passes; how close a kernel runs to the limit.</summary>
    public double Ratio => Allowed > 0 ? MaxError / Allowed : (MaxError == 0 ? 0 : double.PositiveInfinity);

    /// <inheritdoc/>
    public override string ToString() =>
        $"{(Passed ? "pass" : "FAIL")}: max error {MaxError:G3} vs allowed {Allowed:G3} (naive {NaiveMaxError:G3}, floor {Floor:G3}, ratio {Ratio:F3}) at index {WorstIndex}";
}
