using System.ComponentModel;
using System.Globalization;
using System.Numerics.Tensors;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Testing;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Quantization;

public sealed class Int8Settings : ThreadedSettings
{
    [CommandOption("--lengths <LK>")]
    [Description("Cache lengths (keys) to time, comma-separated. Default: 4096,8192,16384,32768.")]
    public string Lengths { get; init; } = "4096,8192,16384,32768";

    [CommandOption("--heads <H>")]
    [Description("Query heads and KV heads as H/KV. Default: 32/8.")]
    public string Heads { get; init; } = "32/8";

    [CommandOption("--json")]
    [Description("Print the results as JSON instead of tables.")]
    public bool Json { get; init; }

    [CommandOption("--kernels")]
    [Description("Also measure the inner products an int8 QKᵀ could use (fp32 FMA, int16 pairs, u8 x s8) in MACs per second.")]
    public bool Kernels { get; init; }

    [CommandOption("--dim <D>")]
    [Description("Head dimension. Default: 128.")]
    public int Dim { get; init; } = 128;

    public int[] ParsedLengths => Lengths.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
        .Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();

    public (int Query, int Kv) ParsedHeads
    {
        get
        {
            var parts = Heads.Split('/');
            return (int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[^1], CultureInfo.InvariantCulture));
        }
    }

    public override ValidationResult Validate()
    {
        try
        {
            if (ParsedLengths is not { Length: > 0 } lengths || lengths.Any(n => n < 1)) return ValidationResult.Error("--lengths needs positive integers.");
            var (h, kv) = ParsedHeads;
            if (h < 1 || kv < 1 || h % kv != 0) return ValidationResult.Error($"--heads {Heads}: H and KV must be positive and KV must divide H.");
        }
        catch (FormatException e) { return ValidationResult.Error(e.Message); }
        return Dim < 1 ? ValidationResult.Error($"--dim must be positive; got {Dim}.") : base.Validate();
    }
}

/// <summary>
/// `bench int8`: decode (one query per head) over a KV cache stored as fp32, bf16 and int8 with per-token scales, timed
/// in turn in one run (the machine's drift falls on all three alike), with the K+V bytes each streams per call; then
/// the accuracy of int8 against the float64 attention of the unquantised cache, on N(0, 1) keys and on keys with a few
/// large outlier channels.
/// </summary>
internal sealed class Int8Command : Command<Int8Settings>
{
    public override int Execute(CommandContext context, Int8Settings settings, CancellationToken cancellationToken)
    {
        var (heads, kvHeads) = settings.ParsedHeads;
        int d = settings.Dim;
        var timings = new List<object>();
        var accuracies = new List<object>();
        if (!settings.Json) AnsiConsole.MarkupLine($"[bold]bench int8[/]: decode B1 H{heads} KV{kvHeads} Lq1 D{d}, {settings.Threads} threads; fp32, bf16 and int8 K/V timed in turn, medians of {settings.Seconds:G} s each");
        var table = new Table().AddColumns("Lk", "fp32 ms", "bf16 ms", "int8 ms", "int8 GB/s K+V", "int8 vs bf16", "int8 vs fp32");
        foreach (int lk in settings.ParsedLengths)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, heads, 1, d);
            using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, kvHeads, lk, d);
            using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, kvHeads, lk, d);
            using var k16 = Convert<BFloat16>(k);
            using var v16 = Convert<BFloat16>(v);
            using var q16 = Convert<BFloat16>(q);
            using var k8 = QuantizedTensor.Quantize<float>(k);
            using var v8 = QuantizedTensor.Quantize<float>(v);
            using var output = NativeTensor<float>.Zeros(1, heads, 1, d);
            using var output16 = NativeTensor<BFloat16>.Zeros(1, heads, 1, d);
            int threads = settings.Threads;
            double[] seconds = Timing.MedianSecondsInterleaved(
            [
                () => CpuBackend.Default.Forward<float>(q, k, v, output, new AttentionOptions { MaxDegreeOfParallelism = threads }),
                () => CpuBackend.Default.Forward<BFloat16>(q16, k16, v16, output16, new AttentionOptions { MaxDegreeOfParallelism = threads }),
                () => CpuBackend.Default.Forward<float>(q, k8, v8, output, new AttentionOptions { MaxDegreeOfParallelism = threads }),
            ], settings.Seconds);
            double int8Bytes = 2.0 * kvHeads * lk * (d + sizeof(float));
            timings.Add(new { lk, f32Ms = seconds[0] * 1e3, bf16Ms = seconds[1] * 1e3, int8Ms = seconds[2] * 1e3, int8GBps = int8Bytes / seconds[2] / 1e9 });
            table.AddRow(lk.ToString(CultureInfo.InvariantCulture), Ms(seconds[0]), Ms(seconds[1]), Ms(seconds[2]),
                (int8Bytes / seconds[2] / 1e9).ToString("F1", CultureInfo.InvariantCulture),
                $"{seconds[1] / seconds[2]:F2}x", $"{seconds[0] / seconds[2]:F2}x");
        }
        if (!settings.Json) AnsiConsole.Write(table);

        var accuracy = new Table().AddColumns("keys", "int8 cosine vs fp64", "int8 relative L2", "bf16 cosine vs fp64", "bf16 relative L2", "error-model bound held");
        foreach (var distribution in new[] { ValueDistribution.Normal, ValueDistribution.Outliers })
        {
            var spec = new ProblemSpec
            {
                Batch = 1, QueryHeads = heads, KvHeads = kvHeads, QueryLength = 1, KeyLength = 4096, HeadDim = d, ValueDim = d,
                Values = distribution, DataSeed = 17,
            };
            using var problem = AttentionProblem<float>.Create(spec);
            using var k8 = QuantizedTensor.Quantize<float>(problem.K);
            using var v8 = QuantizedTensor.Quantize<float>(problem.V);
            var exact = problem.Oracle().Output;
            using var output = problem.AllocateOutput();
            CpuBackend.Default.Forward<float>(problem.Q, k8, v8, output, new AttentionOptions { MaxDegreeOfParallelism = settings.Threads });
            var int8 = Array.ConvertAll(output.ToArray(), x => (double)x);
            using var bf16Problem = AttentionProblem<BFloat16>.Create(spec);
            var bf16 = bf16Problem.Run(CpuBackend.Default).Output;
            var bound = Int8ErrorModel.OutputBound(problem, k8, v8);
            // The Reference's result of the quantised inputs (float64 inside, rounded once to the float output).
            using var reference = problem.AllocateOutput();
            ReferenceBackend.Instance.Forward<float>(problem.Q, k8, v8, reference);
            var quantisedExact = Array.ConvertAll(reference.ToArray(), x => (double)x);
            bool held = Enumerable.Range(0, exact.Length).All(n => Math.Abs(quantisedExact[n] - exact[n]) <= bound[n]);
            accuracies.Add(new
            {
                keys = distribution.ToString(), int8Cosine = Cosine(int8, exact), int8RelativeL2 = RelativeL2(int8, exact),
                bf16Cosine = Cosine(bf16, exact), bf16RelativeL2 = RelativeL2(bf16, exact), boundHeld = held,
            });
            accuracy.AddRow(distribution == ValueDistribution.Normal ? "N(0, 1)" : "outlier channels",
                Cosine(int8, exact).ToString("F6", CultureInfo.InvariantCulture), RelativeL2(int8, exact).ToString("E2", CultureInfo.InvariantCulture),
                Cosine(bf16, exact).ToString("F6", CultureInfo.InvariantCulture), RelativeL2(bf16, exact).ToString("E2", CultureInfo.InvariantCulture),
                held ? "yes" : "NO");
        }
        var rates = settings.Kernels ? DotProductRates.Measure(settings.Threads, settings.Seconds) : [];
        if (settings.Json)
        {
            Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(new { heads, kvHeads, dim = d, settings.Threads, timings, accuracy = accuracies, innerProducts = rates },
                new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        AnsiConsole.MarkupLine($"Accuracy, decode B1 H{heads} KV{kvHeads} Lk4096 D{d}, against the float64 attention of the unquantised inputs (the bf16 column quantises Q, K and V to bf16):");
        AnsiConsole.Write(accuracy);
        if (rates.Count > 0)
        {
            var kernels = new Table().AddColumns("inner product (register-blocked, L1 operands)", "GMAC/s", "vs fp32 FMA");
            foreach (var rate in rates)
                kernels.AddRow(rate.Kernel, (rate.MacsPerSecond / 1e9).ToString("F1", CultureInfo.InvariantCulture), $"{rate.MacsPerSecond / rates[0].MacsPerSecond:F2}x");
            AnsiConsole.MarkupLine($"Inner products for an int8 QKᵀ, {settings.Threads} threads:");
            AnsiConsole.Write(kernels);
        }
        return 0;
    }

    private static string Ms(double seconds) => (seconds * 1e3).ToString("F3", CultureInfo.InvariantCulture);

    private static NativeTensor<T> Convert<T>(NativeTensor<float> source) where T : unmanaged
    {
        var l = source.Lengths;
        return NativeTensor<T>.FromArray(Array.ConvertAll(source.ToArray(), ElementTypes.FromSingle<T>), l.ToArray());
    }

    private static double Cosine(double[] a, double[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int n = 0; n < a.Length; n++) { dot += a[n] * b[n]; na += a[n] * a[n]; nb += b[n] * b[n]; }
        return dot / Math.Sqrt(na * nb);
    }

    private static double RelativeL2(double[] a, double[] b)
    {
        double error = 0, norm = 0;
        for (int n = 0; n < a.Length; n++) { error += (a[n] - b[n]) * (a[n] - b[n]); norm += b[n] * b[n]; }
        return Math.Sqrt(error / norm);
    }
}
