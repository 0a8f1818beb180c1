using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// Int8 scores (<see cref="ScorePrecision.Int8"/>): the CPU kernel against the float64 Reference of its own quantised
/// queries and keys (the one tolerance rule) over drawn problems with every mask kind, GQA, odd shapes and hostile
/// values; hidden keys that never matter; bitwise independence of the thread count; the error model and the accuracy
/// against the unquantised float64 result; refusals.
/// </summary>
public class Int8ScoreTests
{
    private static AttentionOptions Int8(AttentionProblem<float> problem, System.Numerics.Tensors.TensorSpan<float> lse = default) =>
        problem.Options(lse) with { ScorePrecision = ScorePrecision.Int8 };

    /// <summary>The CPU output and LSE of a problem with int8 scores.</summary>
    private static (double[] Output, double[] Lse) RunCpu<T>(AttentionProblem<T> problem, int? threads = null, CpuBackend? backend = null) where T : unmanaged
    {
        var s = problem.Shape;
        using var output = problem.AllocateOutput();
        using var lse = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength);
        output.Fill(ElementTypes.FromSingle<T>(float.NaN));
        lse.Fill(float.NaN);
        var options = problem.Options(lse.AsTensorSpan()) with { ScorePrecision = ScorePrecision.Int8, MaxDegreeOfParallelism = threads };
        (backend ?? CpuBackend.Default).Forward<T>(problem.Q, problem.K, problem.V, output, options);
        return (Array.ConvertAll(output.ToArray(), ElementTypes.ToDouble), Array.ConvertAll(lse.ToArray(), x => (double)x));
    }

    private static void CheckAgainstReference<T>(ProblemSpec spec, CpuBackend? backend = null) where T : unmanaged
    {
        using var problem = AttentionProblem<T>.Create(spec);
        var (output, lse) = RunCpu(problem, backend: backend);
        using var scratch = problem.AllocateOutput();
        QuantizedAttentionTests.CheckAgainstOracles(
            AttentionValidator.Validate<T>(problem.Q, problem.K, problem.V, scratch, problem.Options() with { ScorePrecision = ScorePrecision.Int8 }), output, lse, spec);
    }

    [Fact]
    public void Cpu_matches_the_reference_of_its_quantised_scores_over_drawn_problems()
    {
        foreach (var spec in AttentionGen.Sample(40, seed: 81)) CheckAgainstReference<float>(spec);
        foreach (var spec in AttentionGen.Sample(15, seed: 82, ProblemLimits.Decode)) CheckAgainstReference<float>(spec);
        foreach (var spec in AttentionGen.Sample(12, seed: 83)) CheckAgainstReference<BFloat16>(spec);
        foreach (var spec in AttentionGen.Sample(8, seed: 84)) CheckAgainstReference<Half>(spec);
    }

    [Theory]
    [InlineData(CpuIsa.Vector128)]
    [InlineData(CpuIsa.Avx2)]
    [InlineData(CpuIsa.Avx512)]
    public void Every_vector_width_matches_the_reference(CpuIsa isa)
    {
        var backend = new CpuBackend(isa);
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        foreach (var spec in AttentionGen.Sample(12, seed: 86 + (ulong)isa)) CheckAgainstReference<float>(spec, backend);
    }

    [Fact]
    public void The_portable_pair_products_are_what_vpmaddwd_computes()
    {
        if (!System.Runtime.Intrinsics.X86.Sse2.IsSupported) Assert.Skip("no SSE2 here to compare with");
        var random = new Random(3);
        for (int n = 0; n < 2000; n++)
        {
            var x = System.Runtime.Intrinsics.Vector128.Create(random.Next(int.MinValue, int.MaxValue), random.Next(), -random.Next(), n);
            var k = System.Runtime.Intrinsics.Vector128.Create(random.Next(int.MinValue, int.MaxValue));
            var hardware = System.Runtime.Intrinsics.X86.Sse2.MultiplyAddAdjacent(x.AsInt16(), k.AsInt16());
            // vpmaddwd wraps only for (-32768)² + (-32768)², which int8 values never reach; the random lanes may.
            Assert.Equal(hardware, AttentionEngine.Kernels.Cpu.Simd.Vector128Ops.PortablePairProducts(x, k));
        }
    }

    [Fact]
    public void Dropout_runs_on_int8_scores_as_on_float_ones()
    {
        var limits = ProblemLimits.Default with { Dropout = true, MaxCost = 2e6 };
        var specs = AttentionGen.Sample(40, seed: 85, limits).Where(s => s.Dropout.IsActive).Take(5).ToArray();
        Assert.NotEmpty(specs);
        foreach (var spec in specs) CheckAgainstReference<float>(spec);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(200)]
    public void Results_are_bitwise_the_same_for_any_thread_count(int queries)
    {
        using var sharing = AttentionEngine.Kernels.Cpu.Threading.CpuWorkerPool.ShareEveryCall(); // small problems too run on every thread count
        var spec = new ProblemSpec { Batch = 2, QueryHeads = 8, KvHeads = 2, QueryLength = queries, KeyLength = 333, HeadDim = 72, ValueDim = 40, Causal = CausalAlignment.BottomRight, DataSeed = 5 };
        using var problem = AttentionProblem<float>.Create(spec);
        var one = RunCpu(problem, threads: 1);
        var two = RunCpu(problem, threads: 2);
        var three = RunCpu(problem, threads: 3);
        Assert.Equal(one.Output, two.Output);
        Assert.Equal(one.Output, three.Output);
        Assert.Equal(one.Lse, two.Lse);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(1e30f)]
    [InlineData(-3e38f)]
    public void Hidden_keys_never_matter_whatever_their_values(float poison)
    {
        // A padding keep-mask hides keys 5, 64 and 300..349 from every row; a causal mask hides each row's future keys.
        const int lk = 350;
        var spec = new ProblemSpec { Batch = 1, QueryHeads = 4, KvHeads = 2, QueryLength = 90, KeyLength = lk, HeadDim = 48, ValueDim = 48, Causal = CausalAlignment.BottomRight, DataSeed = 9 };
        using var problem = AttentionProblem<float>.Create(spec);
        using var keep = NativeTensor<bool>.Zeros(1, 1, 1, lk);
        for (int j = 0; j < lk; j++) keep[0, 0, 0, j] = j != 5 && j != 64 && j < 300;
        using var clean = problem.AllocateOutput();
        using var poisoned = problem.AllocateOutput();
        var options = problem.Options() with { ScorePrecision = ScorePrecision.Int8, KeepMask = keep.AsTensorSpan() };
        CpuBackend.Default.Forward<float>(problem.Q, problem.K, problem.V, clean, options);
        for (int h = 0; h < 2; h++)
        for (int j = 0; j < lk; j++)
        {
            if (keep[0, 0, 0, j]) continue;
            for (int c = 0; c < 48; c++) { problem.K[0, h, j, c] = poison; problem.V[0, h, j, c] = poison; }
        }
        CpuBackend.Default.Forward<float>(problem.Q, problem.K, problem.V, poisoned, options);
        Assert.Equal(clean.ToArray(), poisoned.ToArray());
        Assert.All(poisoned.ToArray(), x => Assert.True(float.IsFinite(x)));
    }

    [Theory]
    [InlineData(ValueDistribution.Normal)]
    [InlineData(ValueDistribution.Outliers)]
    public void The_quantised_result_stays_within_the_error_model_of_the_exact_one(ValueDistribution values)
    {
        var spec = new ProblemSpec { Batch = 1, QueryHeads = 4, KvHeads = 2, QueryLength = 100, KeyLength = 300, HeadDim = 64, ValueDim = 64, Values = values, DataSeed = 17 };
        using var problem = AttentionProblem<float>.Create(spec);
        var exact = problem.Oracle().Output;
        using var scratch = problem.AllocateOutput();
        var quantised = ReferenceAttention.Compute(AttentionValidator.Validate<float>(problem.Q, problem.K, problem.V, scratch, Int8(problem))).Output;
        var bound = Int8ErrorModel.ScoreOutputBound(problem);
        for (int n = 0; n < exact.Length; n++)
            Assert.True(Math.Abs(quantised[n] - exact[n]) <= bound[n], $"element {n}: error {Math.Abs(quantised[n] - exact[n])} beyond the bound {bound[n]}");
        if (values == ValueDistribution.Normal)
        {
            var (output, _) = RunCpu(problem);
            Assert.True(QuantizedAttentionTests.Cosine(output, exact) >= 0.9995, $"cosine {QuantizedAttentionTests.Cosine(output, exact)}");
        }
    }

    [Fact]
    public void Smoothing_keeps_keys_with_a_large_common_offset_accurate()
    {
        // Every key carries +40 on its first 8 channels: unsmoothed, the scales would be set by the offset and the
        // rest of each key would round to a few levels. Smoothed, the block mean takes the offset away.
        var spec = new ProblemSpec { Batch = 1, QueryHeads = 2, KvHeads = 1, QueryLength = 64, KeyLength = 256, HeadDim = 64, ValueDim = 64, DataSeed = 23 };
        using var problem = AttentionProblem<float>.Create(spec);
        for (int j = 0; j < 256; j++)
        for (int c = 0; c < 8; c++) problem.K[0, 0, j, c] += 40f;
        var exact = problem.Oracle().Output;
        var (output, _) = RunCpu(problem);
        Assert.True(QuantizedAttentionTests.Cosine(output, exact) >= 0.9995, $"cosine {QuantizedAttentionTests.Cosine(output, exact)}");
    }

    [Fact]
    public void Backward_and_other_backends_refuse_int8_scores_by_name()
    {
        var spec = new ProblemSpec { Batch = 1, QueryHeads = 2, KvHeads = 2, QueryLength = 4, KeyLength = 8, HeadDim = 16, ValueDim = 16, DataSeed = 1 };
        using var problem = AttentionProblem<float>.Create(spec);
        using var output = problem.AllocateOutput();
        using var lse = NativeTensor<float>.Zeros(1, 2, 4);
        using var dq = NativeTensor<float>.Zeros(1, 2, 4, 16);
        using var dk = NativeTensor<float>.Zeros(1, 2, 8, 16);
        using var dv = NativeTensor<float>.Zeros(1, 2, 8, 16);
        var backward = Assert.Throws<NotSupportedException>(() => CpuBackend.Default.Backward<float>(
            problem.Q, problem.K, problem.V, output, lse, output, dq, dk, dv, Int8(problem)));
        Assert.Contains("options.ScorePrecision", backward.Message);
        var bad = Assert.Throws<ArgumentException>(() =>
            CpuBackend.Default.Forward<float>(problem.Q, problem.K, problem.V, output, problem.Options() with { ScorePrecision = (ScorePrecision)7 }));
        Assert.Equal("options.ScorePrecision", bad.ParamName);
        foreach (var backend in Attention.Backends.Where(b => b.IsAvailable && !b.SupportsInt8Scores))
        {
            var refused = Assert.Throws<NotSupportedException>(() => backend.Forward<float>(problem.Q, problem.K, problem.V, output, Int8(problem)));
            Assert.Contains("ScorePrecision", refused.Message);
        }
    }
}
