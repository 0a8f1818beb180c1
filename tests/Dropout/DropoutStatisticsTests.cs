using AttentionEngine.Kernels.Dropout;

namespace AttentionEngine.Tests.Dropout;

/// <summary>
/// The dropout mask's statistics with fixed seeds, drawn through the kernels' own tile generator: the keep rate over
/// 10^7 draws, independence of neighbouring pairs (keys, queries, heads, offsets) by their joint keep frequency, and
/// unrelated masks for different seeds. Every bound is 5 standard deviations of the binomial count.
/// </summary>
public unsafe class DropoutStatisticsTests
{
    private const int Rows = 64, Keys = 4096;

    /// <summary>Keep decisions of rows (query q0 + r, row stream) × keys [0, Keys) from the tile generator.</summary>
    private static bool[] Draw(in DropoutStream dropout, int firstQuery, uint rowStream)
    {
        var queries = new int[Rows];
        var streams = new uint[Rows];
        for (int r = 0; r < Rows; r++) (queries[r], streams[r]) = (firstQuery + r, rowStream);
        var multipliers = new float[Keys * Rows];
        fixed (int* q = queries) fixed (uint* s = streams) fixed (float* m = multipliers)
            DropoutTile.Multipliers(dropout, q, s, Rows, 0, Keys, m, Rows);
        // Transposed back to [row][key].
        var kept = new bool[Rows * Keys];
        for (int j = 0; j < Keys; j++)
        for (int r = 0; r < Rows; r++)
            kept[r * Keys + j] = multipliers[j * Rows + r] != 0;
        return kept;
    }

    private static void AssertWithinFiveSigma(long count, long trials, double probability, string what)
    {
        double mean = trials * probability, sigma = Math.Sqrt(trials * probability * (1 - probability));
        Assert.True(Math.Abs(count - mean) <= 5 * sigma, $"{what}: {count} of {trials}, expected {mean:F0} ± {5 * sigma:F0} (5σ)");
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    [InlineData(0.9)]
    [InlineData(0.003)]
    public void Keep_rate_over_ten_million_draws_is_within_five_sigma_of_one_minus_p(double p)
    {
        var dropout = new DropoutStream(p, seed: 0x1234_5678_9ABC_DEF0, offset: 3);
        long kept = 0, trials = 0;
        for (uint stream = 0; trials < 10_000_000; stream++)
        {
            foreach (bool k in Draw(dropout, 0, stream)) kept += k ? 1 : 0;
            trials += Rows * Keys;
        }
        AssertWithinFiveSigma(kept, trials, 1 - p, $"keep rate at p = {p}");
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    public void Neighbouring_pairs_are_kept_together_as_often_as_independent_draws_would_be(double p)
    {
        var dropout = new DropoutStream(p, seed: 42, offset: 0);
        var next = new DropoutStream(p, seed: 42, offset: 1);
        double both = (1 - p) * (1 - p);
        var a = Draw(dropout, 0, 5);
        var nextHead = Draw(dropout, 0, 6);
        var nextOffset = Draw(next, 0, 5);
        long keyPairs = 0, queryPairs = 0, headPairs = 0, offsetPairs = 0;
        long keyTrials = 0, queryTrials = 0;
        for (int r = 0; r < Rows; r++)
        for (int j = 0; j < Keys; j++)
        {
            bool here = a[r * Keys + j];
            if (j + 1 < Keys) { keyTrials++; keyPairs += here && a[r * Keys + j + 1] ? 1 : 0; }
            if (r + 1 < Rows) { queryTrials++; queryPairs += here && a[(r + 1) * Keys + j] ? 1 : 0; }
            headPairs += here && nextHead[r * Keys + j] ? 1 : 0;
            offsetPairs += here && nextOffset[r * Keys + j] ? 1 : 0;
        }
        AssertWithinFiveSigma(keyPairs, keyTrials, both, "(i, j) and (i, j + 1) both kept");
        AssertWithinFiveSigma(queryPairs, queryTrials, both, "(i, j) and (i + 1, j) both kept");
        AssertWithinFiveSigma(headPairs, Rows * Keys, both, "(b, h) and (b, h + 1) both kept");
        AssertWithinFiveSigma(offsetPairs, Rows * Keys, both, "offsets o and o + 1 both kept");
    }

    [Fact]
    public void Different_seeds_and_high_offset_words_give_unrelated_masks()
    {
        const double p = 0.3;
        var a = Draw(new DropoutStream(p, 1, 0), 0, 0);
        foreach (var other in new[] { new DropoutStream(p, 2, 0), new DropoutStream(p, 1UL << 32, 0), new DropoutStream(p, 1, 1UL << 32) })
        {
            var b = Draw(other, 0, 0);
            long agree = 0;
            for (int n = 0; n < a.Length; n++) agree += a[n] == b[n] ? 1 : 0;
            // Independent masks agree where both keep or both drop.
            AssertWithinFiveSigma(agree, a.Length, p * p + (1 - p) * (1 - p), "agreement of two seeds' masks");
        }
    }

    [Fact]
    public void Probability_zero_keeps_everything_with_factor_one_and_tiny_probabilities_still_scale()
    {
        Assert.False(new DropoutStream(0, 5, 5).IsActive);
        Assert.Equal(1f, new DropoutStream(0, 5, 5).Multiplier(0, 0, 0));
        var tiny = new DropoutStream(1e-12, 5, 5);
        Assert.True(tiny.IsActive);
        Assert.Equal(0u, tiny.Threshold);
        Assert.All(Draw(tiny, 0, 0), Assert.True);
        var almostOne = new DropoutStream(Math.BitDecrement(1.0), 5, 5);
        Assert.Equal(uint.MaxValue, almostOne.Threshold);
        Assert.True(float.IsFinite(almostOne.Scale));
    }
}
