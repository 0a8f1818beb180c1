namespace AttentionEngine.Tests;

/// <summary>The README's serving example is the code that compiles here, and it computes what it says.</summary>
public class ReadmeServingTests
{
    [Fact]
    public void The_readme_serving_example_compiles_here_and_equals_one_shot_attention()
    {
        ReadmeTests.AssertBlockIsCompiledCode("// Two sequences", "ReadmeServingExample.cs", "README:serving");

        using var q = TensorRandom.Create<float>(4, ValueDistribution.Normal, 1, 8, 16, 64);
        using var k = TensorRandom.Create<float>(5, ValueDistribution.Normal, 1, 2, 100, 64);
        using var v = TensorRandom.Create<float>(6, ValueDistribution.Normal, 1, 2, 100, 64);
        using var k1 = Keys(k, 0, 60);
        using var v1 = Keys(v, 0, 60);
        using var k2 = Keys(k, 60, 40);
        using var v2 = Keys(v, 60, 40);
        var (packed, running, runningLse) = ReadmeServingExample.Run(q, k1, v1, k2, v2);
        using (packed)
        using (running)
        using (runningLse)
        {
            Assert.All(packed.ToArray(), x => Assert.True(float.IsFinite(x)));
            using var expected = NativeTensor<float>.Zeros(1, 8, 16, 64);
            using var expectedLse = NativeTensor<float>.Zeros(1, 8, 16);
            Attention.Using(Backend.Reference).Forward<float>(q, k, v, expected, new AttentionOptions { Lse = expectedLse });
            var (a, b) = (running.ToArray(), expected.ToArray());
            for (int n = 0; n < a.Length; n++) Assert.True(Math.Abs(a[n] - b[n]) <= 1e-5, $"output {n}: {a[n]} vs {b[n]}");
            var (la, lb) = (runningLse.ToArray(), expectedLse.ToArray());
            for (int n = 0; n < la.Length; n++) Assert.True(Math.Abs(la[n] - lb[n]) <= 1e-5, $"LSE {n}: {la[n]} vs {lb[n]}");
        }
    }

    /// <summary>Keys [first, first + count) of a [1, H, Lk, D] tensor, as their own tensor.</summary>
    private static NativeTensor<float> Keys(NativeTensor<float> all, int first, int count)
    {
        var part = NativeTensor<float>.Zeros(1, all.Lengths[1], count, all.Lengths[3]);
        for (int h = 0; h < all.Lengths[1]; h++)
        for (int j = 0; j < count; j++)
        for (int x = 0; x < all.Lengths[3]; x++)
            part[0, h, j, x] = all[0, h, first + j, x];
        return part;
    }
}
