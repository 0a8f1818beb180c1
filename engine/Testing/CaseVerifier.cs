namespace AttentionEngine.Testing;

/// <summary>The verdict on one backend for one generated problem.</summary>
/// <param name="Passed">tolerance rule on output and LSE, and every invariant</param>
/// <param name="Ratio">worst error / allowed error over output and LSE (below 1 passes)</param>
/// <param name="Failures">what failed, readable</param>
public sealed record CaseVerdict(bool Passed, double Ratio, IReadOnlyList<string> Failures);

/// <summary>
/// Checks one backend on one problem the way every suite does: the tolerance rule against the float64 oracle for
/// output and LSE, then the invariants. Shared by the property tests and <c>bench verify</c>.
/// </summary>
public static class CaseVerifier
{
    /// <summary>Checks the oracle itself against the independent float64 formula (relative 1e-9 of the output's scale).</summary>
    public static CaseVerdict VerifyOracle<T>(AttentionProblem<T> problem) where T : unmanaged
    {
        var oracle = problem.Oracle();
        var independent = problem.Naive(NaivePrecision.Float64);
        var failures = new List<string>();
        double ratio = Math.Max(
            RelativeDisagreement(oracle.Output, independent.Output, "output", failures),
            RelativeDisagreement(oracle.Lse, independent.Lse, "LSE", failures));
        return new CaseVerdict(failures.Count == 0, ratio, failures);
    }

    /// <summary>Checks a backend: tolerance rule on output and LSE, then every invariant.</summary>
    public static CaseVerdict VerifyBackend<T>(IAttentionForward backend, AttentionProblem<T> problem, int seed) where T : unmanaged
    {
        var failures = new List<string>();
        var baseline = AttentionInvariants.Baseline.Of(problem);
        var result = problem.Run(backend);
        var output = ToleranceRule.Check<T>(result.Output, baseline.Oracle.Output, baseline.Naive.Output, baseline.ScoreRounding.Output);
        var lse = ToleranceRule.Check<float>(result.Lse, baseline.Oracle.Lse, baseline.Naive.Lse, baseline.ScoreRounding.Lse);
        if (!output.Passed) failures.Add($"output {output}");
        if (!lse.Passed) failures.Add($"LSE {lse}");
        foreach (var report in AttentionInvariants.CheckAll(backend, problem, baseline, seed))
            if (!report.Passed) failures.Add(report.ToString());
        return new CaseVerdict(failures.Count == 0, Math.Max(output.Ratio, lse.Ratio), failures);
    }

    private static double RelativeDisagreement(double[] a, double[] b, string what, List<string> failures)
    {
        const double tolerance = 1e-9;
        double scale = 1, worst = 0;
        foreach (double x in b) if (double.IsFinite(x)) scale = Math.Max(scale, Math.Abs(x));
        for (int n = 0; n < a.Length; n++)
        {
            if (a[n].Equals(b[n])) continue;
            double error = Math.Abs(a[n] - b[n]) / (tolerance * scale);
            if (double.IsNaN(error)) error = double.PositiveInfinity;
            worst = Math.Max(worst, error);
        }
        if (worst > 1) failures.Add($"{what}: oracle and independent float64 formula differ by {worst * tolerance:G3} of scale {scale:G3}");
        return worst;
    }
}
