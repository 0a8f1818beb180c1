using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// Attention over int8 keys and values: the CPU kernels against the float64 Reference of the same quantised inputs
/// (the one tolerance rule), bitwise independence of the thread count, hidden keys that never matter, the error model
/// against the unquantised float64 result, and refusals.
/// </summary>
public class QuantizedAttentionTests
{
    /// <summary>A drawn problem with its K and V quantised per token, disposed together.</summary>
    internal sealed class QuantizedProblem<T> : IDisposable where T : unmanaged
    {
        public QuantizedProblem(ProblemSpec spec)
        {
            Problem = AttentionProblem<T>.Create(spec);
            try
            {
                // Elements the quantiser cannot take (hostile NaN, ±inf, beyond 1e30) become 0.
                using var k = Finite(Problem.K);
                using var v = Finite(Problem.V);
                K = QuantizedTensor.Quantize<float>(k);
                V = QuantizedTensor.Quantize<float>(v);
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public AttentionProblem<T> Problem { get; }
        public QuantizedTensor K { get; } = null!;
        public QuantizedTensor V { get; } = null!;

        public void Dispose()
        {
            Problem.Dispose();
            K?.Dispose();
            V?.Dispose();
        }
    }

    private static NativeTensor<float> Finite<T>(NativeTensor<T> source) where T : unmanaged
    {
        var values = Array.ConvertAll(source.ToArray(), x => ElementTypes.ToSingle(x));
        for (int n = 0; n < values.Length; n++) if (!float.IsFinite(values[n]) || Math.Abs(values[n]) > 1e30f) values[n] = 0;
        var l = source.Lengths;
        return NativeTensor<float>.FromArray(values, l[0], l[1], l[2], l[3]);
    }

    /// <summary>The CPU result (output, LSE) of a problem's call with int8 keys and values.</summary>
    private static (double[] Output, double[] Lse) RunCpu<T>(AttentionProblem<T> problem, QuantizedTensor k8, QuantizedTensor v8, int? threads = null)
        where T : unmanaged
    {
        var s = problem.Shape;
        using var output = problem.AllocateOutput();
        using var lse = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength);
        output.Fill(ElementTypes.FromSingle<T>(float.NaN));
        lse.Fill(float.NaN);
        var options = problem.Options(lse.AsTensorSpan()) with { MaxDegreeOfParallelism = threads };
        CpuBackend.Default.Forward<T>(problem.Q, k8, v8, output, options);
        return (Array.ConvertAll(output.ToArray(), ElementTypes.ToDouble), Array.ConvertAll(lse.ToArray(), x => (double)x));
    }

    private static void CheckAgainstReference<T>(ProblemSpec spec) where T : unmanaged
    {
        using var quantized = new QuantizedProblem<T>(spec);
        var (problem, k8, v8) = (quantized.Problem, quantized.K, quantized.V);
        var (output, lse) = RunCpu(problem, k8, v8);
        using var scratch = problem.AllocateOutput();
        CheckAgainstOracles(AttentionValidator.ValidateQuantized<T>(problem.Q, k8, v8, scratch, problem.Options()), output, lse, spec);
    }

    /// <summary>
    /// A candidate's output and LSE of a validated call against the Reference of that call, with the naive formula's
    /// error as the yardstick (the one tolerance rule).
    /// </summary>
    internal static void CheckAgainstOracles<T>(scoped in AttentionCall<T> call, double[] output, double[] lse, ProblemSpec spec) where T : unmanaged
    {
        var oracle = ReferenceAttention.Compute(call);
        var storage = NaiveAttention.Compute(call, NaivePrecision.Storage);
        var rounding = NaiveAttention.Compute(call, NaivePrecision.ScoreRounding);
        var outputReport = ToleranceRule.Check<T>(output, oracle.Output, storage.Output, rounding.Output);
        var lseReport = ToleranceRule.Check<float>(lse, oracle.Lse, storage.Lse, rounding.Lse);
        Assert.True(outputReport.Passed && lseReport.Passed, $"{ElementTypes.ShortName<T>()} {spec}: output {outputReport}; LSE {lseReport}");
    }

    [Fact]
    public void Cpu_matches_the_reference_of_the_quantised_inputs_over_drawn_problems()
    {
        foreach (var spec in AttentionGen.Sample(30, seed: 41)) CheckAgainstReference<float>(spec);
        foreach (var spec in AttentionGen.Sample(30, seed: 42, ProblemLimits.Decode)) CheckAgainstReference<float>(spec);
        foreach (var spec in AttentionGen.Sample(10, seed: 43, ProblemLimits.Decode)) CheckAgainstReference<BFloat16>(spec);
        foreach (var spec in AttentionGen.Sample(10, seed: 44)) CheckAgainstReference<Half>(spec);
    }

    [Fact]
    public void Dropout_runs_on_int8_keys_and_values_as_on_float_ones()
    {
        var limits = ProblemLimits.Default with { Dropout = true, MaxCost = 2e6 };
        int checkedCount = 0;
        foreach (var spec in AttentionGen.Sample(40, seed: 45, limits).Where(s => s.Dropout.IsActive).Take(6))
        {
            CheckAgainstReference<float>(spec);
            checkedCount++;
        }
        Assert.True(checkedCount > 0, "no drawn problem carried dropout");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    public void Results_are_bitwise_the_same_for_any_thread_count(int queries)
    {
        using var sharing = AttentionEngine.Kernels.Cpu.Threading.CpuWorkerPool.ShareEveryCall(); // small problems too run on every thread count
        var spec = new ProblemSpec { Batch = 2, QueryHeads = 8, KvHeads = 2, QueryLength = queries, KeyLength = 777, HeadDim = 64, ValueDim = 64, DataSeed = 5 };
        using var quantized = new QuantizedProblem<float>(spec);
        var (problem, k8, v8) = (quantized.Problem, quantized.K, quantized.V);
        var one = RunCpu(problem, k8, v8, threads: 1);
        var two = RunCpu(problem, k8, v8, threads: 2);
        var three = RunCpu(problem, k8, v8, threads: 3);
        Assert.Equal(one.Output, two.Output);
        Assert.Equal(one.Output, three.Output);
        Assert.Equal(one.Lse, two.Lse);
    }

    [Fact]
    public void A_cache_with_spare_capacity_filled_by_appends_gives_what_a_tight_tensor_gives()
    {
        var spec = new ProblemSpec { Batch = 2, QueryHeads = 4, KvHeads = 2, QueryLength = 1, KeyLength = 200, HeadDim = 48, ValueDim = 48, DataSeed = 21 };
        using var problem = AttentionProblem<float>.Create(spec);
        using var k8 = QuantizedTensor.Quantize<float>(problem.K);
        using var v8 = QuantizedTensor.Quantize<float>(problem.V);
        using var kCache = QuantizedTensor.Zeros(2, 2, 512, 48);
        using var vCache = QuantizedTensor.Zeros(2, 2, 512, 48);
        // A prefill of 150 tokens, then 50 single-token appends.
        kCache.Write<float>(Slice(problem.K, 0, 150), 0);
        vCache.Write<float>(Slice(problem.V, 0, 150), 0);
        for (int t = 150; t < 200; t++)
        {
            kCache.Write<float>(Slice(problem.K, t, 1), t);
            vCache.Write<float>(Slice(problem.V, t, 1), t);
        }
        using var tight = problem.AllocateOutput();
        using var cached = problem.AllocateOutput();
        Attention.Forward<float>(problem.Q, k8, v8, tight);
        Attention.Forward<float>(problem.Q, kCache.Tokens(200), vCache.Tokens(200), cached);
        Assert.Equal(tight.ToArray(), cached.ToArray());
    }

    private static System.Numerics.Tensors.ReadOnlyTensorSpan<float> Slice(NativeTensor<float> tensor, int first, int count)
    {
        var l = tensor.Lengths;
        var storage = tensor.Storage[(int)(first * tensor.Strides[2])..];
        return TensorLayout.ReadOnlyView<float>(storage, [l[0], l[1], count, l[3]], tensor.Strides);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void A_row_has_the_same_bits_whether_its_gqa_group_shares_the_int8_keys_or_not(int queries)
    {
        // Four query heads per KV head take the shared-key path; the same heads over repeated K/V take the one-row path.
        var spec = new ProblemSpec { Batch = 1, QueryHeads = 8, KvHeads = 2, QueryLength = queries, KeyLength = 300, HeadDim = 64, ValueDim = 32, DataSeed = 13 };
        using var quantized = new QuantizedProblem<float>(spec);
        var (problem, k8, v8) = (quantized.Problem, quantized.K, quantized.V);
        using var kRepeated = QuantizedTensor.Zeros(1, 8, 300, 64);
        using var vRepeated = QuantizedTensor.Zeros(1, 8, 300, 32);
        for (int h = 0; h < 8; h++)
        for (int j = 0; j < 300; j++)
        {
            kRepeated.Scales[0, h, j] = k8.Scales[0, h / 4, j];
            vRepeated.Scales[0, h, j] = v8.Scales[0, h / 4, j];
            for (int c = 0; c < 64; c++) kRepeated.Values[0, h, j, c] = k8.Values[0, h / 4, j, c];
            for (int c = 0; c < 32; c++) vRepeated.Values[0, h, j, c] = v8.Values[0, h / 4, j, c];
        }
        using var grouped = problem.AllocateOutput();
        using var repeated = problem.AllocateOutput();
        CpuBackend.Default.Forward<float>(problem.Q, k8, v8, grouped);
        CpuBackend.Default.Forward<float>(problem.Q, kRepeated, vRepeated, repeated);
        Assert.Equal(repeated.ToArray(), grouped.ToArray());
    }

    [Theory]
    [InlineData(2)]
    [InlineData(70)]
    public void Hidden_keys_never_matter_whatever_their_int8_values_and_scales(int queries)
    {
        // Key padding through a keep-mask and a causal band: garbage (random bytes, the largest scale) in hidden keys.
        const int keys = 150;
        int[] valid = [90, 150];
        var spec = new ProblemSpec { Batch = 2, QueryHeads = 4, KvHeads = 2, QueryLength = queries, KeyLength = keys, HeadDim = 40, ValueDim = 24, DataSeed = 9 };
        using var quantized = new QuantizedProblem<float>(spec);
        var (problem, k8, v8) = (quantized.Problem, quantized.K, quantized.V);
        using var keep = NativeTensor<bool>.Zeros(2, 1, 1, keys);
        for (int b = 0; b < 2; b++) for (int j = 0; j < valid[b]; j++) keep[b, 0, 0, j] = true;
        var options = new AttentionOptions { KeepMask = keep.AsTensorSpan(), Mask = Mask.Causal(CausalAlignment.BottomRight) };
        using var before = problem.AllocateOutput();
        using var after = problem.AllocateOutput();
        CpuBackend.Default.Forward<float>(problem.Q, k8, v8, before, options);
        var random = new Random(3);
        for (int b = 0; b < 2; b++)
        for (int h = 0; h < 2; h++)
        for (int j = valid[b]; j < keys; j++)
        {
            k8.Scales[b, h, j] = QuantizedTensor.MaxScale;
            v8.Scales[b, h, j] = QuantizedTensor.MaxScale;
            for (int c = 0; c < 40; c++) k8.Values[b, h, j, c] = (sbyte)random.Next(-128, 128);
            for (int c = 0; c < 24; c++) v8.Values[b, h, j, c] = (sbyte)random.Next(-128, 128);
        }
        CpuBackend.Default.Forward<float>(problem.Q, k8, v8, after, options);
        Assert.Equal(before.ToArray(), after.ToArray());
        Assert.All(after.ToArray(), x => Assert.True(float.IsFinite(x)));
    }

    [Theory]
    [InlineData(ValueDistribution.Normal, 64)]
    [InlineData(ValueDistribution.Normal, 128)]
    [InlineData(ValueDistribution.Outliers, 128)]
    public void The_error_model_bounds_the_exact_attention_of_the_quantised_inputs(ValueDistribution values, int headDim)
    {
        var spec = new ProblemSpec
        {
            Batch = 1, QueryHeads = 8, KvHeads = 2, QueryLength = 4, KeyLength = 512, HeadDim = headDim, ValueDim = headDim,
            Values = values, DataSeed = 11,
        };
        using var quantized = new QuantizedProblem<float>(spec);
        var (problem, k8, v8) = (quantized.Problem, quantized.K, quantized.V);
        var exact = problem.Oracle().Output;
        using var scratch = problem.AllocateOutput();
        var quantised = ReferenceAttention.Compute(AttentionValidator.ValidateQuantized<float>(problem.Q, k8, v8, scratch, problem.Options())).Output;
        var bound = Int8ErrorModel.OutputBound(problem, k8, v8);
        for (int n = 0; n < exact.Length; n++)
            Assert.True(Math.Abs(quantised[n] - exact[n]) <= bound[n], $"element {n}: error {Math.Abs(quantised[n] - exact[n])} beyond the bound {bound[n]}");
        if (values == ValueDistribution.Normal)
        {
            var (output, _) = RunCpu(problem, k8, v8);
            Assert.True(Cosine(output, exact) >= 0.9995, $"cosine {Cosine(output, exact)}");
        }
    }

    internal static double Cosine(double[] a, double[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int n = 0; n < a.Length; n++) { dot += a[n] * b[n]; na += a[n] * a[n]; nb += b[n] * b[n]; }
        return dot / Math.Sqrt(na * nb);
    }

    [Fact]
    public void Bad_scales_lengths_and_aliasing_are_refused_by_name()
    {
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 4, 2, 16);
        using var k = QuantizedTensor.Zeros(1, 2, 10, 16);
        using var v = QuantizedTensor.Zeros(1, 2, 10, 16);
        using var output = NativeTensor<float>.Zeros(1, 4, 2, 16);
        void Run(QuantizedTensorSpan kk, QuantizedTensorSpan vv) => Attention.Forward<float>(q, kk, vv, output);

        k.Scales[0, 1, 7] = float.NaN;
        var error = Assert.Throws<ArgumentException>(() => Run(k, v));
        Assert.Equal("k.Scales", error.ParamName);
        Assert.Contains("k.Scales[0, 1, 7] is NaN", error.Message);
        k.Scales[0, 1, 7] = -1;
        Assert.Equal("k.Scales", Assert.Throws<ArgumentException>(() => Run(k, v)).ParamName);
        k.Scales[0, 1, 7] = float.MaxValue;
        Assert.Equal("k.Scales", Assert.Throws<ArgumentException>(() => Run(k, v)).ParamName);
        k.Scales[0, 1, 7] = 0.5f;

        // A view of the first 6 tokens: a bad scale inside it is found, one in the spare capacity past it does not matter.
        k.Scales[0, 0, 8] = float.PositiveInfinity;
        Attention.Forward<float>(q, k.Tokens(6), v.Tokens(6), output);
        k.Scales[0, 1, 5] = float.NegativeInfinity;
        Assert.Contains("k.Scales[0, 1, 5] is -Infinity", Assert.Throws<ArgumentException>(() => Attention.Forward<float>(q, k.Tokens(6), v.Tokens(6), output)).Message);
        k.Scales[0, 0, 8] = 0.5f;
        k.Scales[0, 1, 5] = 0.5f;

        using var shortScales = NativeTensor<float>.Zeros(1, 2, 9);
        error = Assert.Throws<ArgumentException>(() => Run(new QuantizedTensorSpan(k.Values.AsReadOnlyTensorSpan(), shortScales), v));
        Assert.Equal("k.Scales", error.ParamName);
        Assert.Contains("expected 10", error.Message);

        error = Assert.Throws<ArgumentException>(() => Run(k, v.Tokens(9)));
        Assert.Equal("v", error.ParamName);

        // An output over the memory of the int8 keys (2,048 bytes: room for the 128 floats of the output).
        using var bigK = QuantizedTensor.Zeros(1, 2, 64, 16);
        using var bigV = QuantizedTensor.Zeros(1, 2, 64, 16);
        error = Assert.ThrowsAny<ArgumentException>(() => ForwardIntoKeys(q, bigK, bigV));
        Assert.Equal("output", error.ParamName);
        Assert.Contains("k.Values", error.Message);
    }

    private static unsafe void ForwardIntoKeys(NativeTensor<float> q, QuantizedTensor k, QuantizedTensor v)
    {
        var overKeys = new Span<float>(k.Values.Pointer, 512);
        Attention.Forward<float>(q, k, v, TensorLayout.View(overKeys, [1, 4, 2, 16], [128, 32, 16, 1]));
    }

    /// <summary>A backend that knows nothing of int8 keys and values: it must never be handed such a call.</summary>
    private sealed class FloatOnlyBackend : AttentionBackend
    {
        public override string Name => "FloatOnlyInt8Test";
        protected internal override void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod) =>
            throw new InvalidOperationException("must not run");
    }

    [Fact]
    public void A_backend_that_does_not_read_int8_refuses_the_call_by_name()
    {
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 2, 2, 8);
        using var k = QuantizedTensor.Zeros(1, 2, 5, 8);
        using var v = QuantizedTensor.Zeros(1, 2, 5, 8);
        using var output = NativeTensor<float>.Zeros(1, 2, 2, 8);
        var error = Assert.Throws<NotSupportedException>(() => new FloatOnlyBackend().Forward<float>(q, k, v, output));
        Assert.Contains("int8", error.Message);
        ReferenceBackend.Instance.Forward<float>(q, k, v, output);
        Assert.All(output.ToArray(), x => Assert.Equal(0f, x)); // zero scales: every key and value is 0
    }
}
