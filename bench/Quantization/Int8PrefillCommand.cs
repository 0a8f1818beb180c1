using System.ComponentModel;
using System.Globalization;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Testing;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Quantization;

public sealed class Int8PrefillSettings : ThreadedSettings
{
    [CommandOption("--lengths <N>")]
    [Description("Sequence lengths (Lq = Lk), comma-separated. Default: 2048,4096.")]
    public string Lengths { get; init; } = "2048,4096";

    [CommandOption("--dims <D>")]
    [Description("Head dimensions, comma-separated. Default: 64,128.")]
    public string Dims { get; init; } = "64,128";

    [CommandOption("--heads <H>")]
    [Description("Heads (B = 1). Default: 8.")]
    public int Heads { get; init; } = 8;

    [CommandOption("--json")]
    [Description("Print the results as JSON instead of tables.")]
    public bool Json { get; init; }

    public int[] ParsedLengths => Parse(Lengths);
    public int[] ParsedDims => Parse(Dims);

    private static int[] Parse(string list) => list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
        .Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();

    public override ValidationResult Validate()
    {
        try
        {
            if (ParsedLengths is not { Length: > 0 } lengths || lengths.Any(n => n < 1)) return ValidationResult.Error("--lengths needs positive integers.");
            if (ParsedDims is not { Length: > 0 } dims || dims.Any(n => n < 1)) return ValidationResult.Error("--dims needs positive integers.");
        }
        catch (FormatException e) { return ValidationResult.Error(e.Message); }
        return Heads < 1 ? ValidationResult.Error($"--heads must be positive; got {Heads}.") : base.Validate();
    }
}

/// <summary>
/// `bench int8-prefill`: self-attention with int8 scores (<see cref="ScorePrecision.Int8"/>) against the same fp32
/// call with float scores, timed in turn in one run, causal and not, with GFLOP/s and the fraction of the measured fp32
/// FMA peak; then the accuracy of both against float64 (on sampled rows) for N(0, 1) inputs and for keys with a large
/// per-channel offset, next to an unsmoothed int8 quantisation of the same inputs (per-token scales, no mean taken out),
/// to show what SageAttention's smoothing buys.
/// </summary>
internal sealed class Int8PrefillCommand : Command<Int8PrefillSettings>
{
    public override int Execute(CommandContext context, Int8PrefillSettings settings, CancellationToken cancellationToken)
    {
        int heads = settings.Heads, threads = settings.Threads;
        var limits = MachineLimits.Measure(threads);
        var timings = new List<object>();
        if (!settings.Json)
            AnsiConsole.MarkupLine($"[bold]bench int8-prefill[/]: B1 H{heads}, fp32 inputs, {threads} threads; float and int8 scores timed in turn, medians of {settings.Seconds:G} s each; measured fp32 FMA peak {limits.PeakGflops:F0} GFLOP/s");
        var table = new Table().AddColumns("N", "D", "mask", "fp32 ms", "int8 ms", "int8 vs fp32", "fp32 GFLOP/s (% peak)", "int8 GFLOP/s", "int8 cosine (sampled rows)");
        foreach (int n in settings.ParsedLengths)
        foreach (int d in settings.ParsedDims)
        foreach (bool causal in new[] { false, true })
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, heads, n, d);
            using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, heads, n, d);
            using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, heads, n, d);
            using var output = NativeTensor<float>.Zeros(1, heads, n, d);
            var mask = causal ? Mask.Causal() : null;
            double[] seconds = Timing.MedianSecondsInterleaved(
            [
                () => CpuBackend.Default.Forward<float>(q, k, v, output, new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = threads }),
                () => CpuBackend.Default.Forward<float>(q, k, v, output, new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = threads, ScorePrecision = ScorePrecision.Int8 }),
            ], settings.Seconds);
            // The int8 call ran last: its output is what the cosine measures.
            double cosine = SampledRows.Cosine(q, k, v, output, causal);
            double flops = 4.0 * heads * n * (double)n * d * (causal ? 0.5 : 1.0);
            double f32Rate = flops / seconds[0] / 1e9, int8Rate = flops / seconds[1] / 1e9;
            timings.Add(new { n, d, causal, f32Ms = seconds[0] * 1e3, int8Ms = seconds[1] * 1e3, speedup = seconds[0] / seconds[1], f32Gflops = f32Rate, int8Gflops = int8Rate, int8Cosine = cosine });
            table.AddRow(n.ToString(CultureInfo.InvariantCulture), d.ToString(CultureInfo.InvariantCulture), causal ? "causal" : "none",
                Ms(seconds[0]), Ms(seconds[1]), $"{seconds[0] / seconds[1]:F2}x",
                $"{f32Rate:F0} ({f32Rate / limits.PeakGflops:P0})", $"{int8Rate:F0}", cosine.ToString("F6", CultureInfo.InvariantCulture));
        }

        var accuracies = new List<object>();
        var accuracy = new Table().AddColumns("keys", "int8 (smoothed) cosine", "int8 relative L2", "unsmoothed int8 cosine", "unsmoothed relative L2");
        foreach (bool offset in new[] { false, true })
        {
            const int n = 1024, d = 128;
            using var q = TensorRandom.Create<float>(4, ValueDistribution.Normal, 1, 2, n, d);
            using var k = TensorRandom.Create<float>(5, ValueDistribution.Normal, 1, 2, n, d);
            using var v = TensorRandom.Create<float>(6, ValueDistribution.Normal, 1, 2, n, d);
            if (offset)
                // LLM keys often carry a large, token-independent bias on a few channels; 8 of them at ±20 here.
                for (int h = 0; h < 2; h++)
                for (int j = 0; j < n; j++)
                for (int c = 0; c < 8; c++) k[0, h, j, c] += c % 2 == 0 ? 20f : -20f;
            using var output = NativeTensor<float>.Zeros(1, 2, n, d);
            CpuBackend.Default.Forward<float>(q, k, v, output, new AttentionOptions { MaxDegreeOfParallelism = threads, ScorePrecision = ScorePrecision.Int8 });
            var (smoothedCosine, smoothedL2) = SampledRows.Compare(q, k, v, output, causal: false);
            var (plainCosine, plainL2) = SampledRows.CompareUnsmoothed(q, k, v, causal: false);
            string keys = offset ? "N(0,1) + 8 channels at ±20" : "N(0, 1)";
            accuracies.Add(new { keys, smoothedCosine, smoothedRelativeL2 = smoothedL2, unsmoothedCosine = plainCosine, unsmoothedRelativeL2 = plainL2 });
            accuracy.AddRow(keys, smoothedCosine.ToString("F6", CultureInfo.InvariantCulture), smoothedL2.ToString("E2", CultureInfo.InvariantCulture),
                plainCosine.ToString("F6", CultureInfo.InvariantCulture), plainL2.ToString("E2", CultureInfo.InvariantCulture));
        }

        if (settings.Json)
        {
            Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(new { heads, threads, peakGflops = limits.PeakGflops, timings, accuracy = accuracies },
                new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("Accuracy against float64 on 64 sampled rows per head, B1 H2 N1024 D128, no mask:");
        AnsiConsole.Write(accuracy);
        return 0;
    }

    private static string Ms(double seconds) => (seconds * 1e3).ToString("F2", CultureInfo.InvariantCulture);
}
