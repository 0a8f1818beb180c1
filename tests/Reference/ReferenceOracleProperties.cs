using AttentionEngine.Testing;
using FsCheck.Xunit;

namespace AttentionEngine.Tests;

/// <summary>
/// The oracle checked against the independent float64 formula on 500 generated problems per run (300 f32, 100 f16,
/// 100 bf16). FsCheck prints the replay seed and the shrunk problem on failure.
/// </summary>
public class ReferenceOracleProperties
{
    [Property(MaxTest = 200, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Oracle_matches_independent_formula_f32(ProblemSpec spec) => Check<float>(spec);

    [Property(MaxTest = 100, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Oracle_matches_independent_formula_f16(ProblemSpec spec) => Check<Half>(spec);

    [Property(MaxTest = 100, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Oracle_matches_independent_formula_bf16(ProblemSpec spec) => Check<BFloat16>(spec);

    private static void Check<T>(ProblemSpec spec) where T : unmanaged
    {
        using var problem = AttentionProblem<T>.Create(spec);
        var verdict = CaseVerifier.VerifyOracle(problem);
        Assert.True(verdict.Passed, $"{spec}: {string.Join("; ", verdict.Failures)}");

        var oracle = problem.Oracle(withWeights: true);
        Assert.DoesNotContain(oracle.Output, double.IsNaN);
        Assert.DoesNotContain(oracle.Lse, double.IsNaN);
        int lk = problem.Shape.KeyLength;
        for (int row = 0; row < oracle.Lse.Length; row++)
        {
            double sum = oracle.Weights!.AsSpan(row * lk, lk).ToArray().Sum();
            double expected = double.IsNegativeInfinity(oracle.Lse[row]) ? 0 : 1;
            Assert.True(Math.Abs(sum - expected) < 1e-9, $"weights of row {row} sum to {sum}, expected {expected}: {spec}");
        }
    }
}

/// <summary>
/// The Reference backend (the oracle rounded once into the storage type) through the tolerance rule and every
/// invariant, exactly as later backends will be checked.
/// </summary>
public class ReferenceBackendProperties
{
    [Property(MaxTest = 50, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Reference_backend_passes_rule_and_invariants_f32(ProblemSpec spec) => Check<float>(spec);

    [Property(MaxTest = 15, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Reference_backend_passes_rule_and_invariants_f16(ProblemSpec spec) => Check<Half>(spec);

    [Property(MaxTest = 15, Arbitrary = [typeof(AttentionArbitraries)])]
    public void Reference_backend_passes_rule_and_invariants_bf16(ProblemSpec spec) => Check<BFloat16>(spec);

    private static void Check<T>(ProblemSpec spec) where T : unmanaged
    {
        using var problem = AttentionProblem<T>.Create(spec);
        var verdict = CaseVerifier.VerifyBackend(Attention.Using(Backend.Reference), problem, spec.DataSeed);
        Assert.True(verdict.Passed, $"{spec}: {string.Join("; ", verdict.Failures)}");

        // Weights written by the backend are the oracle's, rounded once to float.
        var weights = problem.Run(Attention.Using(Backend.Reference), withWeights: true).Weights!;
        var exact = problem.Oracle(withWeights: true).Weights!;
        for (int n = 0; n < exact.Length; n++)
            Assert.Equal((float)exact[n], (float)weights[n]);
    }
}
