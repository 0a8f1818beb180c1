using AttentionEngine.Testing;
using FsCheck.Xunit;

namespace AttentionEngine.Tests;

/// <summary>
/// The oracle checked against an independent float64 formula on 500 generated problems per run (300 f32, 100 f16,
/// 100 bf16), and the Reference backend (the oracle rounded into the storage type) against the tolerance rule.
/// FsCheck prints the replay seed and the shrunk problem on failure.
/// </summary>
public class ReferenceOracleProperties
{
    [Property(MaxTest = 300, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Oracle_matches_independent_formula_f32(ProblemSpec spec) => Check<float>(spec);

    [Property(MaxTest = 100, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Oracle_matches_independent_formula_f16(ProblemSpec spec) => Check<Half>(spec);

    [Property(MaxTest = 100, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Oracle_matches_independent_formula_bf16(ProblemSpec spec) => Check<BFloat16>(spec);

    private static void Check<T>(ProblemSpec spec) where T : unmanaged
    {
        using var problem = AttentionProblem<T>.Create(spec);
        var oracle = problem.Oracle(withWeights: true);
        var independent = problem.Naive(NaivePrecision.Float64);

        // Two float64 programs summing in different orders agree to ~1e-13 relative; 1e-9 leaves room, nothing more.
        AssertClose(oracle.Output, independent.Output, "output", spec);
        AssertClose(oracle.Lse, independent.Lse, "LSE", spec);

        Assert.DoesNotContain(oracle.Output, double.IsNaN);
        Assert.DoesNotContain(oracle.Lse, double.IsNaN);
        var s = problem.Shape;
        for (long row = 0; row < oracle.Lse.Length; row++)
        {
            double sum = oracle.Weights!.AsSpan((int)(row * s.KeyLength), s.KeyLength).ToArray().Sum();
            double expected = double.IsNegativeInfinity(oracle.Lse[row]) ? 0 : 1;
            Assert.True(Math.Abs(sum - expected) < 1e-9, $"weights of row {row} sum to {sum}, expected {expected}: {spec}");
        }

        // The backend rounds the oracle once into T: it must pass the rule, with its LSE and weights.
        var backend = problem.Run(Attention.Using(Backend.Reference), withLse: true, withWeights: true);
        var naive = problem.Naive(NaivePrecision.Storage);
        var output = ToleranceRule.Check<T>(backend.Output, oracle.Output, naive.Output);
        Assert.True(output.Passed, $"output {output}: {spec}");
        var lse = ToleranceRule.Check<float>(backend.Lse, oracle.Lse, naive.Lse);
        Assert.True(lse.Passed, $"LSE {lse}: {spec}");
        var weights = ToleranceRule.Check<float>(backend.Weights!, oracle.Weights!, new double[oracle.Weights!.Length]);
        Assert.True(weights.MaxError <= 2 * ElementTypes.MachineEpsilon<float>(), $"weights {weights}: {spec}");
    }

    private static void AssertClose(double[] actual, double[] expected, string what, ProblemSpec spec)
    {
        double scale = 1;
        foreach (double x in expected) if (double.IsFinite(x)) scale = Math.Max(scale, Math.Abs(x));
        for (int n = 0; n < expected.Length; n++)
        {
            if (actual[n].Equals(expected[n])) continue;
            Assert.True(Math.Abs(actual[n] - expected[n]) <= 1e-9 * scale,
                $"{what}[{n}]: oracle {actual[n]:R}, independent formula {expected[n]:R}: {spec}");
        }
    }
}

/// <summary>The invariants of attention, on the Reference backend; later backends run the same checks.</summary>
public class ReferenceInvariantProperties
{
    [Property(MaxTest = 80, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Invariants_hold_f32(ProblemSpec spec) => Check<float>(spec);

    [Property(MaxTest = 25, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Invariants_hold_f16(ProblemSpec spec) => Check<Half>(spec);

    [Property(MaxTest = 25, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Invariants_hold_bf16(ProblemSpec spec) => Check<BFloat16>(spec);

    private static void Check<T>(ProblemSpec spec) where T : unmanaged
    {
        using var problem = AttentionProblem<T>.Create(spec);
        var failures = AttentionInvariants.CheckAll(Attention.Using(Backend.Reference), problem, spec.DataSeed)
            .Where(r => !r.Passed).ToList();
        Assert.True(failures.Count == 0, $"{spec}: {string.Join("; ", failures)}");
    }
}
