using AttentionEngine.Testing;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

public class GeneratorTests
{
    [Fact]
    public void Generated_problems_cover_every_feature_the_suites_rely_on()
    {
        var specs = AttentionGen.Problems().Sample(3000);
        Assert.All(Enum.GetValues<MemoryLayout>(), x => Assert.Contains(specs, s => s.Layout == x));
        Assert.All(Enum.GetValues<BiasKind>(), x => Assert.Contains(specs, s => s.Bias == x));
        Assert.All(Enum.GetValues<KeepMaskKind>(), x => Assert.Contains(specs, s => s.KeepMask == x));
        Assert.All(Enum.GetValues<ValueDistribution>(), x => Assert.Contains(specs, s => s.Values == x));
        Assert.Contains(specs, s => s.Causal == CausalAlignment.TopLeft);
        Assert.Contains(specs, s => s.Causal == CausalAlignment.BottomRight);
        Assert.Contains(specs, s => s.Window is not null && s.Causal is not null && s.Bias != BiasKind.None);
        Assert.Contains(specs, s => s.KvHeads < s.QueryHeads && s.KvHeads > 1);
        Assert.Contains(specs, s => s.KvHeads == 1 && s.QueryHeads > 1);
        Assert.Contains(specs, s => s.HeadDim == 1);
        Assert.Contains(specs, s => s.HeadDim == 256);
        Assert.Contains(specs, s => s.HeadDim != s.ValueDim);
        Assert.Contains(specs, s => s.QueryLength > 200 || s.KeyLength > 200);
        Assert.Contains(specs, s => s.QueryLength == 1);
        Assert.True(specs.Count(s => s.QueryLength != s.KeyLength) > specs.Length / 2);
        Assert.Contains(specs, s => s.Scale is not null);
        Assert.All(specs, s => Assert.True(s.Cost <= ProblemLimits.Default.MaxCost));
        Assert.All(specs, s => Assert.Equal(0, s.QueryHeads % s.KvHeads));
    }

    [Fact]
    public void Shrinking_reaches_the_smallest_failing_problem()
    {
        // Pretend every problem with Lq >= 50 fails, and shrink greedily as FsCheck does.
        static bool Fails(ProblemSpec s) => s.QueryLength >= 50;
        var spec = new ProblemSpec
        {
            Batch = 3, QueryHeads = 8, KvHeads = 2, QueryLength = 277, KeyLength = 190, HeadDim = 111, ValueDim = 64,
            Layout = MemoryLayout.Bshd, Causal = CausalAlignment.BottomRight, Window = new WindowSpec(3, 0, CausalAlignment.TopLeft),
            Bias = BiasKind.KeyPadding, KeepMask = KeepMaskKind.Random, Scale = 2.5f, Values = ValueDistribution.Outliers, DataSeed = 77,
        };
        for (int steps = 0; steps < 1000; steps++)
        {
            var smaller = AttentionGen.Shrink(spec).FirstOrDefault(Fails);
            if (smaller is null) break;
            spec = smaller;
        }
        Assert.Equal("B1 Hq1 Hkv1 Lq50 Lk1 D1 Dv1 contiguous scale:default values:Normal seed:77", spec.ToString());
    }

    [Fact]
    public void Shrink_candidates_are_valid_and_strictly_simpler()
    {
        foreach (var spec in AttentionGen.Problems().Sample(300))
        foreach (var smaller in AttentionGen.Shrink(spec))
        {
            smaller.Validate();
            Assert.NotEqual(spec, smaller);
            Assert.True(smaller.Cost <= spec.Cost);
        }
    }

    [Fact]
    public void The_same_spec_gives_the_same_tensors()
    {
        var spec = AttentionGen.Problems().Sample(1).Single() with { DataSeed = 1234 };
        using var a = AttentionProblem<BFloat16>.Create(spec);
        using var b = AttentionProblem<BFloat16>.Create(spec);
        Assert.Equal(a.Q.ToArray(), b.Q.ToArray());
        Assert.Equal(a.V.ToArray(), b.V.ToArray());
        Assert.Equal(a.Bias?.ToArray(), b.Bias?.ToArray());
        Assert.Equal(a.KeepMask?.ToArray(), b.KeepMask?.ToArray());
    }
}
