using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>Built-in functors against hand-written definitions, score functors, block skipping, and errors.</summary>
public class FlexAttentionTests
{
    private const int Lq = 150, Lk = 190;

    /// <summary>Each built-in mask against its textbook definition, written out here independently.</summary>
    public static TheoryData<string> MaskNames => ["causal-TL", "causal-BR", "window", "prefix", "documents", "dilated", "global", "and", "or", "not"];

    private static (IMaskMod Mask, Func<int, int, bool> Definition) Builtin(string name)
    {
        int[] docs = Enumerable.Range(0, Math.Max(Lq, Lk)).Select(n => n / 37).ToArray();
        return name switch
        {
            "causal-TL" => (Mask.Causal().ToFunctor(Lq, Lk), (i, j) => j <= i),
            "causal-BR" => (Mask.Causal(CausalAlignment.BottomRight).ToFunctor(Lq, Lk), (i, j) => j <= i + (Lk - Lq)),
            "window" => (Mask.SlidingWindow(5, 2).ToFunctor(Lq, Lk), (i, j) => j >= i - 5 && j <= i + 2),
            "prefix" => (new PrefixLmMask(20), (i, j) => j < 20 || j <= i),
            "documents" => (new DocumentMask(docs[..Lq], docs[..Lk], causal: true), (i, j) => i / 37 == j / 37 && j <= i),
            "dilated" => (new DilatedMask(3, 30), (i, j) => i - j >= 0 && i - j <= 30 && (i - j) % 3 == 0),
            "global" => (new GlobalTokensMask(4, 6), (i, j) => i < 4 || j < 4 || Math.Abs(i - j) <= 6),
            "and" => (MaskMods.And(Mask.SlidingWindow(40, 0).ToFunctor(Lq, Lk), new DocumentMask(docs[..Lq], docs[..Lk], false)),
                (i, j) => j >= i - 40 && j <= i && i / 37 == j / 37),
            "or" => (MaskMods.Or(new PrefixLmMask(10), new DilatedMask(3, 30)), (i, j) => j < 10 || j <= i || (i - j >= 0 && i - j <= 30 && (i - j) % 3 == 0)),
            "not" => (MaskMods.Not(Mask.Causal().ToFunctor(Lq, Lk)), (i, j) => j > i),
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };
    }

    [Theory]
    [MemberData(nameof(MaskNames))]
    public void Builtin_masks_match_their_definitions_and_classify_blocks_soundly(string name)
    {
        var (mask, definition) = Builtin(name);
        for (int i = 0; i < Lq; i++)
        for (int j = 0; j < Lk; j++)
            Assert.True(mask.Keep(0, 0, i, j) == definition(i, j), $"{name} at ({i}, {j})");
        if (mask is not IBlockClassifiedMask classified) return;
        // Arithmetic classification must never claim Full or Empty wrongly (Partial is always safe).
        foreach (int block in new[] { 1, 7, 16, 64 })
        for (int q0 = 0; q0 < Lq; q0 += block)
        for (int k0 = 0; k0 < Lk; k0 += block)
        {
            int q1 = Math.Min(Lq, q0 + block), k1 = Math.Min(Lk, k0 + block);
            var kind = classified.Classify(0, 0, q0, q1, k0, k1);
            bool all = true, none = true;
            for (int i = q0; i < q1; i++)
            for (int j = k0; j < k1; j++)
            {
                all &= definition(i, j);
                none &= !definition(i, j);
            }
            if (kind == BlockKind.Full) Assert.True(all, $"{name} block q[{q0},{q1}) k[{k0},{k1}) called full");
            if (kind == BlockKind.Empty) Assert.True(none, $"{name} block q[{q0},{q1}) k[{k0},{k1}) called empty");
            if (block == 1) Assert.NotEqual(BlockKind.Partial, kind); // single pairs are never mixed
        }
    }

    [Fact]
    public void Additive_score_functors_equal_the_same_bias_through_the_reference()
    {
        using var problem = AttentionProblem<float>.Create(Spec(heads: 4));
        var alibi = AlibiScore.Standard(4);
        var table = Enumerable.Range(0, 41).Select(n => MathF.Sin(n) * 2).ToArray();
        var relative = new RelativePositionScore(table);
        var chained = new ChainedScore<AlibiScore, RelativePositionScore>(alibi, relative);
        using var bias = NativeTensor<float>.Zeros(1, 4, Lq, Lk);
        for (int h = 0; h < 4; h++)
        for (int i = 0; i < Lq; i++)
        for (int j = 0; j < Lk; j++)
            bias[0, h, i, j] = alibi.Slope(h) * (j - i) + table[Math.Clamp(j - i, -20, 20) + 20];
        using var dense = new AttentionProblem<float>("bias", NativeTensor<float>.CopyOf(problem.Q), NativeTensor<float>.CopyOf(problem.K),
            NativeTensor<float>.CopyOf(problem.V), bias: NativeTensor<float>.CopyOf(bias), mask: Mask.Causal());
        using var causalProblem = new AttentionProblem<float>("causal", NativeTensor<float>.CopyOf(problem.Q), NativeTensor<float>.CopyOf(problem.K),
            NativeTensor<float>.CopyOf(problem.V), mask: Mask.Causal());
        var baseline = AttentionInvariants.Baseline.Of(dense);
        var result = causalProblem.Run(FlexAttention.WithScore(chained));
        var report = ToleranceRule.Check<float>(result.Output, baseline.Oracle.Output, baseline.Naive.Output, baseline.ScoreRounding.Output);
        Assert.True(report.Passed, report.ToString());
    }

    [Fact]
    public void Softcap_on_the_cpu_matches_the_reference_definition()
    {
        // Large values make the cap bite: scores reach ±100 before capping at ±5.
        using var problem = AttentionProblem<float>.Create(Spec(heads: 2) with { Values = ValueDistribution.Large });
        var softcap = new TanhSoftcapScore(5);
        var cpu = problem.Run(FlexAttention.WithScore(softcap, CpuBackend.Default));
        var reference = problem.Run(FlexAttention.WithScore(softcap, Attention.Using(Backend.Reference)));
        double scale = Math.Max(1, reference.Output.Max(Math.Abs));
        for (int n = 0; n < cpu.Output.Length; n++)
            Assert.True(Math.Abs(cpu.Output[n] - reference.Output[n]) <= 1e-5 * scale, $"output {n}: {cpu.Output[n]} vs {reference.Output[n]}");
        for (int n = 0; n < cpu.Lse.Length; n++)
            Assert.True(Math.Abs(cpu.Lse[n] - reference.Lse[n]) <= 1e-5 * Math.Max(1, Math.Abs(reference.Lse[n])), $"LSE {n}");
        Assert.All(cpu.Lse, x => Assert.True(x <= Math.Log(Lk) + 5 + 1e-4)); // the cap holds every score below 5
    }

    [Theory]
    [InlineData(150)] // tile kernel
    [InlineData(3)]   // decode kernel
    public void Keys_and_values_in_empty_blocks_are_never_read(int queries)
    {
        var shape = new AttentionShape(1, 4, 2, queries, 700, 64, 64);
        var random = new Random(5);
        var layout = new BlockKind[4 * ((queries + 63) / 64) * 11];
        for (int n = 0; n < layout.Length; n++) layout[n] = n % 11 is 3 or 4 or 9 ? BlockKind.Empty : (BlockKind)(1 + random.Next(2));
        var blocks = BlockMask.FromLayout(new DilatedMask(2, 400), layout, 1, 4, queries, 700);
        using var problem = AttentionProblem<float>.Create(Spec(heads: 4) with { KvHeads = 2, QueryLength = queries, KeyLength = 700 });
        var before = problem.Run(FlexAttention.Create(blocks));
        // Poison every key and value that only empty blocks cover (key blocks 3, 4 and 9 are empty for every row).
        foreach (int kb in new[] { 3, 4, 9 })
        for (int h = 0; h < 2; h++)
        for (int j = kb * 64; j < Math.Min(700, kb * 64 + 64); j++)
        for (int c = 0; c < 64; c++)
        {
            problem.K[0, h, j, c] = float.NaN;
            problem.V[0, h, j, c] = float.PositiveInfinity;
        }
        var after = problem.Run(FlexAttention.Create(blocks));
        Assert.Equal(before.Output, after.Output);
        Assert.Equal(before.Lse, after.Lse);
        _ = shape;
    }

    [Fact]
    public void Block_masks_of_the_wrong_shape_are_refused_by_name()
    {
        using var problem = AttentionProblem<float>.Create(Spec(heads: 2));
        using var output = problem.AllocateOutput();
        void Run<TMask>(BlockMask<TMask> blocks) where TMask : struct, IMaskMod =>
            FlexAttention.Create(blocks).Forward<float>(problem.Q, problem.K, problem.V, output);
        var e = Assert.Throws<ArgumentException>(() => Run(BlockMask.Create(new KeepAll(), 1, 1, Lq + 1, Lk)));
        Assert.Equal("blockMask", e.ParamName);
        Assert.Contains($"queryLength is {Lq + 1}; expected {Lq}", e.Message);
        e = Assert.Throws<ArgumentException>(() => Run(BlockMask.Create(new KeepAll(), 1, 3, Lq, Lk)));
        Assert.Contains("heads is 3; expected 1 or 2", e.Message);
        e = Assert.Throws<ArgumentException>(() => BlockMask.FromLayout(new KeepAll(), new BlockKind[5], 1, 1, Lq, Lk));
        Assert.Contains("layout has 5 entries; expected", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockMask.Create(new KeepAll(), 1, 1, Lq, Lk, queryBlock: 0));
        Assert.Throws<ArgumentException>(() => new DocumentMask([0, 2, 1], [0], false));
        Assert.Throws<ArgumentException>(() => new RelativePositionScore(new float[4]));
    }

    [Fact]
    public void Block_masks_report_flex_attention_indices()
    {
        var blocks = BlockMask.Create(Mask.Causal().ToFunctor(256, 256), 1, 1, 256, 256, 64, 64);
        var (partialCounts, partial) = blocks.IndicesOf(BlockKind.Partial);
        var (fullCounts, full) = blocks.IndicesOf(BlockKind.Full);
        Assert.Equal([1, 1, 1, 1], partialCounts); // the diagonal blocks
        Assert.Equal([0, 1, 2, 3], fullCounts);    // the blocks below it
        Assert.Equal(3, partial[3 * 4]);
        Assert.Equal([0, 1, 2, -1], full[(3 * 4)..(4 * 4)]);
        Assert.Equal(10.0 / 16, blocks.Density);
    }

    private static ProblemSpec Spec(int heads) => new()
    {
        Batch = 1, QueryHeads = heads, KvHeads = heads, QueryLength = Lq, KeyLength = Lk, HeadDim = 64, ValueDim = 64,
        Values = ValueDistribution.Normal, DataSeed = 42,
    };
}

public class BlockMaskDrawingTests
{
    [Fact]
    public void A_block_mask_draws_its_pattern()
    {
        // Causal over 256 x 256 in 64 x 64 blocks: full below the diagonal, partial on it, empty above.
        var blocks = BlockMask.Create(Mask.Causal().ToFunctor(256, 256), batch: 1, heads: 1, queryLength: 256, keyLength: 256);
        Assert.Equal("+...\n#+..\n##+.\n###+\n", blocks.Draw());
        Assert.EndsWith("('#' full, '+' partial, '.' empty)\n+...\n#+..\n##+.\n###+\n", blocks.ToString());
        Assert.StartsWith("BlockMask<BandMask>[1, 1, 4x64, 4x64] density 62.5", blocks.ToString());
    }
}
