using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// The score-rounding yardstick of the tolerance rule (<see cref="NaivePrecision.ScoreRounding"/>) holds for score
/// errors of any size: sound (no perturbation within the errors moves the softmax further) and first-order tight.
/// </summary>
public class ScoreErrorReachTests
{
    // Drawn by CI (CpuBackendProperties.Avx2_f32, replay (6837656005195012418,10513499126840452957,50)), shrunk: at scale
    // 1e30 the scores are near 1e31 and fp32 rounds each by about 1e25; row 64's two best keys are closer than that, so
    // every fp32 kernel here picks the other key's V (0.339 away), while the first-order yardstick allowed 1.6e-6.
    private static readonly ProblemSpec NearTieAtHugeLogits = new()
    {
        QueryLength = 65, KeyLength = 39, HeadDim = 210, ValueDim = 1, Bias = BiasKind.KeyPadding, Scale = 1e30f,
        Values = ValueDistribution.Normal, DataSeed = 907249396,
    };

    [Theory]
    [InlineData(CpuIsa.Avx512)]
    [InlineData(CpuIsa.Avx2)]
    [InlineData(CpuIsa.Vector128)]
    public void A_near_tie_at_huge_logits_is_within_the_rule_on_every_isa(CpuIsa isa)
    {
        var backend = new CpuBackend(isa);
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        BackendChecks.CheckDrawnProblem<float>(backend, NearTieAtHugeLogits);
    }

    [Fact]
    public void No_perturbation_within_the_errors_moves_a_row_beyond_its_reach()
    {
        var random = new Random(5);
        for (int trial = 0; trial < 400; trial++)
        {
            int n = random.Next(1, 9);
            // Errors from negligible to far beyond the gaps, so both the first-order and the saturated regimes are drawn.
            double errorScale = Math.Pow(10, random.Next(-8, 3)); // both forms: at most 1e-3 (closed), above (log-sum-exps)
            var s = new double[n];
            var e = new double[n];
            var v = new double[n];
            for (int j = 0; j < n; j++)
            {
                s[j] = random.Next(4) == 0 ? double.NegativeInfinity : (random.NextDouble() - 0.5) * 20;
                e[j] = double.IsNegativeInfinity(s[j]) ? 0 : random.NextDouble() * errorScale;
                v[j] = random.NextDouble() * 2 - 1;
            }
            if (s.All(double.IsNegativeInfinity)) continue;
            var p = Softmax(s);
            var reach = ScoreErrorReach.Of(s, e, p);
            double o = Dot(p, v), outputBound = 0, spread = 0, lse = LogSumExp(s);
            for (int j = 0; j < n; j++)
            {
                if (!reach.CanCarryWeight(s[j], e[j])) continue;
                spread = Math.Max(spread, Math.Abs(v[j] - o));
                outputBound += reach.OutputCoefficient(s[j], e[j], p[j]) * Math.Abs(v[j] - o);
            }
            outputBound = Math.Min(outputBound, spread);

            for (int draw = 0; draw < 50; draw++)
            {
                // Corners of the error box are where the extremes lie; draw them and interior points.
                var perturbed = new double[n];
                for (int j = 0; j < n; j++)
                    perturbed[j] = s[j] + e[j] * (draw % 2 == 0 ? (random.Next(2) * 2 - 1) : random.NextDouble() * 2 - 1);
                var q = Softmax(perturbed);
                double slack = 1e-12 * (1 + Math.Abs(o));
                Assert.True(Math.Abs(Dot(q, v) - o) <= outputBound + slack, $"trial {trial}: output moved {Math.Abs(Dot(q, v) - o)} > {outputBound}");
                Assert.True(Math.Abs(LogSumExp(perturbed) - lse) <= reach.LseSlack() + 1e-12 * (1 + Math.Abs(lse)), $"trial {trial}: LSE");
                for (int j = 0; j < n; j++)
                    Assert.True(Math.Abs(q[j] - p[j]) <= reach.WeightSlack(s[j], e[j], p[j]) + 1e-15, $"trial {trial}: weight {j}");
            }
        }
    }

    [Theory]
    [InlineData(1e-7, 5)]   // the closed forms
    [InlineData(2e-3, 1)]   // the log-sum-exps (errors above ScoreErrorReach.SmallError): within a few e_j of first order
    public void Small_errors_reach_as_far_as_the_first_order_terms(double unit, int digits)
    {
        double[] s = [1.5, 0.25, -3, double.NegativeInfinity];
        double[] e = [unit, 3 * unit, 2 * unit, 0];
        var p = Softmax(s);
        var reach = ScoreErrorReach.Of(s, e, p);
        double firstOrderLse = 0;
        for (int j = 0; j < s.Length; j++) firstOrderLse += p[j] * e[j];
        for (int j = 0; j < s.Length; j++)
        {
            if (p[j] == 0) continue;
            Assert.Equal(1.0, reach.OutputCoefficient(s[j], e[j], p[j]) / (p[j] * e[j]), digits);
            Assert.Equal(1.0, reach.WeightSlack(s[j], e[j], p[j]) / (p[j] * (e[j] + firstOrderLse)), digits);
        }
        Assert.Equal(1.0, reach.LseSlack() / firstOrderLse, digits);
    }

    private static double[] Softmax(double[] s)
    {
        double lse = LogSumExp(s);
        return s.Select(x => double.IsNegativeInfinity(x) ? 0 : Math.Exp(x - lse)).ToArray();
    }

    private static double LogSumExp(double[] s)
    {
        double max = s.Max();
        return max + Math.Log(s.Sum(x => Math.Exp(x - max)));
    }

    private static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();
}
