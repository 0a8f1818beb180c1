using AttentionEngine.Kernels.IlGpu;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The ILGPU backend with block masks and functors (the same structs the CPU kernel runs), its element codecs, and its
/// errors; on ILGPU's CPU accelerator.
/// </summary>
[Collection(nameof(IlGpuCpuAccelerator))]
public class IlGpuBackendTests(IlGpuCpuAccelerator accelerator)
{
    private IlGpuBackend Backend => accelerator.Backend;

    [Fact]
    public void Block_masks_and_mask_functors_match_the_reference()
    {
        // The draws include DocumentMask (arrays: its partial-block pairs are evaluated on the host) and every
        // value-only built-in (passed to the kernel as a generic struct argument).
        Prop.ForAll(ShrinkBudget.Capped(AttentionGen.Arbitrary(IlGpuBackendProperties.Small)), (ProblemSpec drawn) => FlexAttentionProperties.CheckDrawnBlockMask<float>(Backend, drawn))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(8));
    }

    [Fact]
    public void One_score_functor_definition_gives_the_same_results_on_the_cpu_kernel_and_the_ilgpu_kernel()
    {
        // Large values make the cap bite; a causal band and a prefix-LM block mask run with it.
        using var problem = AttentionProblem<float>.Create(Spec() with { Values = ValueDistribution.Large });
        var score = new ChainedScore<TanhSoftcapScore, TanhSoftcapScore>(new(8), new(5));
        var blocks = BlockMask.Create(new PrefixLmMask(9), 1, 1, problem.Shape.QueryLength, problem.Shape.KeyLength, 16, 16);
        var cpu = problem.Run(FlexAttention.Create(blocks, score, CpuBackend.Default));
        var gpu = problem.Run(FlexAttention.Create(blocks, score, Backend));
        var reference = problem.Run(FlexAttention.Create(blocks, score, Attention.Using(AttentionEngine.Backend.Reference)));
        double scale = Math.Max(1, reference.Output.Max(Math.Abs));
        for (int n = 0; n < gpu.Output.Length; n++)
        {
            Assert.True(Math.Abs(gpu.Output[n] - reference.Output[n]) <= 1e-5 * scale, $"output {n}: ilgpu {gpu.Output[n]} vs reference {reference.Output[n]}");
            Assert.True(Math.Abs(gpu.Output[n] - cpu.Output[n]) <= 2e-5 * scale, $"output {n}: ilgpu {gpu.Output[n]} vs cpu {cpu.Output[n]}");
        }
        for (int n = 0; n < gpu.Lse.Length; n++)
            Assert.True(Math.Abs(gpu.Lse[n] - cpu.Lse[n]) <= 1e-5 * Math.Max(1, Math.Abs(cpu.Lse[n])), $"LSE {n}: ilgpu {gpu.Lse[n]} vs cpu {cpu.Lse[n]}");
    }

    [Fact]
    public void Keys_and_values_in_empty_blocks_are_never_read()
    {
        using var problem = AttentionProblem<float>.Create(Spec() with { KeyLength = 96 });
        var layout = Enumerable.Range(0, 3 * 6).Select(n => n % 6 is 1 or 4 ? BlockKind.Empty : (BlockKind)(1 + n % 2)).ToArray();
        var blocks = BlockMask.FromLayout(new DilatedMask(2, 60), layout, 1, 1, problem.Shape.QueryLength, 96, 16, 16);
        var before = problem.Run(FlexAttention.Create(blocks, Backend));
        foreach (int kb in new[] { 1, 4 })
        for (int h = 0; h < problem.Shape.KvHeads; h++)
        for (int j = kb * 16; j < kb * 16 + 16; j++)
        {
            for (int c = 0; c < problem.Shape.HeadDim; c++) problem.K[0, h, j, c] = float.NaN;
            for (int c = 0; c < problem.Shape.ValueDim; c++) problem.V[0, h, j, c] = float.PositiveInfinity;
        }
        var after = problem.Run(FlexAttention.Create(blocks, Backend));
        Assert.Equal(before.Output, after.Output);
        Assert.Equal(before.Lse, after.Lse);
    }

    [Fact]
    public void Attention_weights_match_the_oracle()
    {
        foreach (var spec in AttentionGen.Sample(4, seed: 21, IlGpuBackendProperties.Small))
        {
            using var problem = AttentionProblem<float>.Create(spec);
            var weights = problem.Run(Backend, withWeights: true).Weights!;
            var oracle = problem.Oracle(withWeights: true).Weights!;
            var report = ToleranceRule.Check<float>(weights, oracle,
                problem.Naive(NaivePrecision.Storage, withWeights: true).Weights!, problem.Naive(NaivePrecision.ScoreRounding, withWeights: true).Weights!);
            Assert.True(report.Passed, $"{spec}: {report}");
            for (int n = 0; n < oracle.Length; n++)
                if (oracle[n] == 0) Assert.Equal(0.0, weights[n]); // hidden keys get exactly 0
        }
    }

    [Fact]
    public void Score_functors_holding_arrays_are_refused_by_name()
    {
        using var problem = AttentionProblem<float>.Create(Spec());
        var error = Assert.Throws<NotSupportedException>(() => problem.Run(FlexAttention.WithScore(AlibiScore.Standard(2), Backend)));
        Assert.Contains(nameof(AlibiScore), error.Message);
        Assert.Contains("managed references", error.Message);
    }

    [Fact]
    public void Head_dimensions_beyond_256_are_refused_with_the_values()
    {
        using var problem = AttentionProblem<float>.Create(Spec() with { HeadDim = 300, ValueDim = 8 });
        var error = Assert.Throws<NotSupportedException>(() => problem.Run(Backend));
        Assert.Contains("D = 300", error.Message);
    }

    [Fact]
    public void A_disposed_backend_refuses_calls()
    {
        var backend = new IlGpuBackend(IlGpuDeviceKind.Cpu);
        using var problem = AttentionProblem<float>.Create(Spec() with { QueryLength = 5, KeyLength = 7 });
        problem.Run(backend);
        backend.Dispose();
        Assert.Throws<ObjectDisposedException>(() => problem.Run(backend));
    }

    [Fact]
    public void Asking_for_a_missing_accelerator_reports_it_unavailable_with_the_reason()
    {
        using var cuda = new IlGpuBackend(IlGpuDeviceKind.Cuda);
        if (cuda.IsAvailable) Assert.Skip($"this machine has an ILGPU CUDA device ({cuda.Accelerator})");
        Assert.Contains("Cuda", cuda.UnavailableReason);
        using var problem = AttentionProblem<float>.Create(Spec() with { QueryLength = 5, KeyLength = 7 });
        var error = Assert.Throws<InvalidOperationException>(() => problem.Run(cuda));
        Assert.Contains("not available", error.Message);
    }

    private static ProblemSpec Spec() => new()
    {
        Batch = 1, QueryHeads = 2, KvHeads = 1, QueryLength = 40, KeyLength = 70, HeadDim = 32, ValueDim = 24,
        Values = ValueDistribution.Normal, DataSeed = 7,
    };
}

/// <summary>The device-side element conversions against .NET's own, over every 16-bit pattern and hostile floats.</summary>
public class IlGpuElementCodecTests
{
    [Fact]
    public void Half_bits_load_exactly_as_System_Half_for_all_65536_patterns()
    {
        var codec = default(HalfCodec);
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            float actual = codec.Load((ushort)bits);
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual) || (float.IsNaN(expected) && float.IsNaN(actual)),
                $"0x{bits:x4}: {actual} vs {expected}");
        }
    }

    [Fact]
    public void Stores_round_to_nearest_even_as_dotnet_does()
    {
        var half = default(HalfCodec);
        var bf16 = default(BFloat16Codec);
        var random = new Random(3);
        IEnumerable<float> Values()
        {
            foreach (float f in new[] { 0f, -0f, 1f, 65504f, 65519.99f, 65520f, 1e6f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 1e-10f, float.Epsilon,
                float.MaxValue, float.PositiveInfinity, float.NegativeInfinity, float.NaN })
            {
                yield return f;
                yield return -f;
            }
            for (int n = 0; n < 200_000; n++) yield return BitConverter.Int32BitsToSingle(random.Next(int.MinValue, int.MaxValue));
            // Exact halfway cases between neighbouring halves (ties go to even).
            for (int bits = 0; bits < 0x7c00; bits += 7)
            {
                float a = (float)BitConverter.UInt16BitsToHalf((ushort)bits), b = (float)BitConverter.UInt16BitsToHalf((ushort)(bits + 1));
                yield return (a + b) / 2;
            }
        }
        foreach (float f in Values())
        {
            ushort expectedHalf = BitConverter.HalfToUInt16Bits((Half)f), actualHalf = half.Store(f);
            Assert.True(expectedHalf == actualHalf || (float.IsNaN(f) && Half.IsNaN(BitConverter.UInt16BitsToHalf(actualHalf))),
                $"half of {f:R} (0x{BitConverter.SingleToInt32Bits(f):x8}): 0x{actualHalf:x4} vs 0x{expectedHalf:x4}");
            ushort expectedBf = ((BFloat16)f).RawValue, actualBf = bf16.Store(f);
            Assert.True(expectedBf == actualBf || (float.IsNaN(f) && BFloat16.IsNaN(BFloat16.FromBits(actualBf))),
                $"bf16 of {f:R}: 0x{actualBf:x4} vs 0x{expectedBf:x4}");
            Assert.Equal(BitConverter.SingleToInt32Bits((float)BFloat16.FromBits(actualBf)), BitConverter.SingleToInt32Bits(bf16.Load(actualBf)));
        }
    }
}
