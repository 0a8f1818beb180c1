using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

public class ShrinkBudgetTests
{
    [Fact]
    public void A_capped_run_tries_at_most_its_budget_of_shrink_candidates_in_all()
    {
        var spec = new ProblemSpec
        {
            Batch = 2, QueryHeads = 4, KvHeads = 2, QueryLength = 50, KeyLength = 60, HeadDim = 24, ValueDim = 16,
            Causal = CausalAlignment.TopLeft, Bias = BiasKind.KeyPadding, Values = ValueDistribution.Large,
        };
        var uncapped = AttentionGen.Arbitrary();
        Assert.True(uncapped.Shrinker(spec).Count() > 7, "the spec shrinks in fewer than 8 ways: the test says nothing");
        var capped = ShrinkBudget.Capped(uncapped, 7);
        var first = capped.Shrinker(spec).Take(5).ToArray();
        var rest = capped.Shrinker(spec).ToArray(); // the budget spans calls: FsCheck asks again for every smaller failure
        Assert.Equal(uncapped.Shrinker(spec).Take(5), first);
        Assert.Equal(2, rest.Length);
        Assert.Empty(capped.Shrinker(spec));
    }
}
