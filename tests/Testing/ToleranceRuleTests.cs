using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>The one tolerance rule at the edges of a storage type's range.</summary>
public class ToleranceRuleTests
{
    [Fact]
    public void An_infinity_is_exact_where_the_oracle_lies_beyond_the_storage_range()
    {
        // 1e5 is beyond Half's largest finite value (65504): the correctly rounded Half is +infinity.
        double[] oracle = [1e5, -2e5, 1.0];
        Assert.True(ToleranceRule.Check<Half>([double.PositiveInfinity, double.NegativeInfinity, 1.0], oracle, oracle).Passed);
        // The wrong sign, or an infinity where Half holds the value (60000), fails.
        Assert.False(ToleranceRule.Check<Half>([double.NegativeInfinity, double.NegativeInfinity, 1.0], oracle, oracle).Passed);
        double[] representable = [60000, 1.0];
        Assert.False(ToleranceRule.Check<Half>([double.PositiveInfinity, 1.0], representable, representable).Passed);
        // In float, 1e5 is an ordinary value: an infinity is an error.
        Assert.False(ToleranceRule.Check<float>([double.PositiveInfinity, double.NegativeInfinity, 1.0], oracle, oracle).Passed);
    }
}
