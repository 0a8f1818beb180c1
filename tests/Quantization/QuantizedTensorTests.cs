namespace AttentionEngine.Tests;

/// <summary>Per-token symmetric int8 quantisation: the error bound, zero rows, appends and refusals.</summary>
public class QuantizedTensorTests
{
    [Theory]
    [InlineData(ValueDistribution.Normal)]
    [InlineData(ValueDistribution.Outliers)]
    [InlineData(ValueDistribution.Large)]
    public void Every_element_is_within_half_a_scale_and_every_value_within_127(ValueDistribution distribution)
    {
        using var source = TensorRandom.Create<float>(7, distribution, 2, 3, 17, 40);
        using var quantized = QuantizedTensor.Quantize<float>(source);
        for (int b = 0; b < 2; b++)
        for (int h = 0; h < 3; h++)
        for (int t = 0; t < 17; t++)
        {
            float scale = quantized.Scales[b, h, t];
            double max = 0;
            for (int c = 0; c < 40; c++) max = Math.Max(max, Math.Abs(source[b, h, t, c]));
            Assert.Equal((float)(max / 127), scale);
            for (int c = 0; c < 40; c++)
            {
                sbyte value = quantized.Values[b, h, t, c];
                Assert.InRange(value, -127, 127);
                Assert.True(Math.Abs(source[b, h, t, c] - value * (double)scale) <= scale / 2.0 * (1 + 1e-6),
                    $"[{b}, {h}, {t}, {c}]: {source[b, h, t, c]} vs {value} · {scale}");
            }
        }
    }

    [Fact]
    public void A_row_of_zeros_gets_scale_zero_and_values_zero()
    {
        using var source = NativeTensor<float>.Zeros(1, 1, 2, 8);
        source[0, 0, 1, 3] = -2.5f;
        using var quantized = QuantizedTensor.Quantize<float>(source);
        Assert.Equal(0f, quantized.Scales[0, 0, 0]);
        for (int c = 0; c < 8; c++) Assert.Equal(0, quantized.Values[0, 0, 0, c]);
        Assert.Equal(-127, quantized.Values[0, 0, 1, 3]);
        Assert.Equal(2.5f / 127, quantized.Scales[0, 0, 1]);
    }

    [Fact]
    public void Appends_write_only_their_tokens_and_views_show_the_filled_ones()
    {
        using var cache = QuantizedTensor.Zeros(1, 2, 8, 16);
        using var first = TensorRandom.Create<BFloat16>(1, ValueDistribution.Normal, 1, 2, 3, 16);
        using var next = TensorRandom.Create<BFloat16>(2, ValueDistribution.Normal, 1, 2, 1, 16);
        cache.Write<BFloat16>(first, 0);
        cache.Write<BFloat16>(next, 3);
        using var expected = QuantizedTensor.Quantize<BFloat16>(first);
        for (int h = 0; h < 2; h++)
        {
            for (int t = 0; t < 3; t++)
            {
                Assert.Equal(expected.Scales[0, h, t], cache.Scales[0, h, t]);
                for (int c = 0; c < 16; c++) Assert.Equal(expected.Values[0, h, t, c], cache.Values[0, h, t, c]);
            }
            Assert.NotEqual(0f, cache.Scales[0, h, 3]);
            for (int t = 4; t < 8; t++) Assert.Equal(0f, cache.Scales[0, h, t]);
        }
        var view = cache.Tokens(4);
        Assert.Equal(new nint[] { 1, 2, 4, 16 }, view.Values.Lengths.ToArray());
        Assert.Equal(new nint[] { 1, 2, 4 }, view.Scales.Lengths.ToArray());
    }

    [Fact]
    public void Non_finite_sources_overflowing_appends_and_mismatched_lengths_are_refused_and_write_nothing()
    {
        using var cache = QuantizedTensor.Zeros(1, 1, 4, 8);
        using var bad = NativeTensor<float>.Zeros(1, 1, 2, 8);
        bad[0, 0, 1, 5] = float.NaN;
        var error = Assert.Throws<ArgumentException>(() => cache.Write<float>(bad, 0));
        Assert.Equal("source", error.ParamName);
        Assert.Contains("source[0, 0, 1, 5] is NaN", error.Message);
        bad[0, 0, 1, 5] = 1;
        Assert.Equal("firstToken", Assert.Throws<ArgumentOutOfRangeException>(() => cache.Write<float>(bad, 3)).ParamName);
        using var wide = NativeTensor<float>.Zeros(1, 1, 1, 9);
        Assert.Contains("dimension 3 (dim) is 9; expected 8", Assert.Throws<ArgumentException>(() => cache.Write<float>(wide, 0)).Message);
        for (int t = 0; t < 4; t++) Assert.Equal(0f, cache.Scales[0, 0, t]);
        Assert.Equal("count", Assert.Throws<ArgumentOutOfRangeException>(() => cache.Tokens(5)).ParamName);
    }
}
