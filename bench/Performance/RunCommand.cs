using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Text.Json;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Performance;

/// <summary>
/// `bench run`: measures the machine's limits, then times the preset cases (fp32; decode also with BFloat16 K/V)
/// and prints ms, GFLOP/s (GB/s of K+V for decode) and the fraction of the measured limit.
/// </summary>
internal sealed class RunCommand : Command<RunSettings>
{
    private sealed record Row(string Case, string Type, double Milliseconds, double Rate, string Unit, double FractionOfLimit);

    public override int Execute(CommandContext context, RunSettings settings, CancellationToken cancellationToken)
    {
        var backend = settings.Backend == "cpu" ? (AttentionBackend)CpuBackend.Default : Attention.Using(AttentionEngine.Backend.Reference);
        var limits = MachineLimitsCache.Get(settings.Threads);
        var rows = new List<Row>();
        foreach (var c in PerformanceCase.ParseList(settings.Shapes))
        {
            foreach (string type in TypesFor(c, settings.Types))
            {
                cancellationToken.ThrowIfCancellationRequested();
                rows.Add(type switch
                {
                    "f16" => Time<Half>(c, backend, settings),
                    "bf16" => Time<BFloat16>(c, backend, settings),
                    _ => Time<float>(c, backend, settings),
                });
            }
        }
        string isa = backend is CpuBackend cpu ? cpu.ResolvedIsa.ToString() : "scalar";
        if (settings.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                command = "run", backend = backend.Name, isa, threads = settings.Threads, cpu = CpuModel(),
                peakGflops = limits.PeakGflops, bandwidthGBs = limits.BandwidthGBs, rows,
            }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]bench run[/]: {Markup.Escape(backend.Name)} ({isa}), {settings.Threads} threads, {Markup.Escape(CpuModel())}");
        AnsiConsole.MarkupLine($"measured limits: fp32 FMA peak {limits.PeakGflops:F0} GFLOP/s, memory {limits.BandwidthGBs:F1} GB/s");
        var table = new Table().AddColumns("case", "type", "ms", "rate", "of limit");
        foreach (var r in rows)
            table.AddRow(r.Case, r.Type, r.Milliseconds.ToString("F2"), $"{r.Rate:F1} {r.Unit}", r.FractionOfLimit.ToString("P0"));
        AnsiConsole.Write(table);
        return 0;
    }

    private static IEnumerable<string> TypesFor(PerformanceCase c, string types) =>
        types == "auto" ? (c.Decode ? ["f32", "bf16"] : ["f32"]) : types.Split(',').Select(t => t.Trim());

    private static Row Time<T>(PerformanceCase c, AttentionBackend backend, RunSettings settings) where T : unmanaged
    {
        using var q = TensorRandom.Create<T>(1, ValueDistribution.Normal, c.Batch, c.Heads, c.QueryLength, c.HeadDim);
        using var k = TensorRandom.Create<T>(2, ValueDistribution.Normal, c.Batch, c.KvHeads, c.KeyLength, c.HeadDim);
        using var v = TensorRandom.Create<T>(3, ValueDistribution.Normal, c.Batch, c.KvHeads, c.KeyLength, c.HeadDim);
        using var output = NativeTensor<T>.Zeros(c.Batch, c.Heads, c.QueryLength, c.HeadDim);
        var mask = c.Causal ? Mask.Causal() : null;
        void Once() => backend.Forward<T>(q, k, v, output, new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = settings.Threads });
        Once(); // warm-up: JIT and scratch
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (total.Elapsed.TotalSeconds < settings.Seconds || times.Count < 3)
        {
            var watch = Stopwatch.StartNew();
            Once();
            times.Add(watch.Elapsed.TotalSeconds);
        }
        times.Sort();
        double median = times[times.Count / 2];
        var limits = MachineLimitsCache.Get(settings.Threads);
        if (c.Decode)
        {
            double gbs = c.KvBytes(System.Runtime.CompilerServices.Unsafe.SizeOf<T>()) / median / 1e9;
            return new Row(c.Name, ElementTypes.ShortName<T>(), median * 1e3, gbs, "GB/s K+V", gbs / limits.BandwidthGBs);
        }
        double gflops = c.Flops / median / 1e9;
        return new Row(c.Name, ElementTypes.ShortName<T>(), median * 1e3, gflops, "GFLOP/s", gflops / limits.PeakGflops);
    }

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        }
        catch (IOException) { return "unknown CPU"; }
    }
}

/// <summary>Measures the limits once per thread count per process.</summary>
internal static class MachineLimitsCache
{
    private static readonly Dictionary<int, MachineLimits> Cache = new();

    public static MachineLimits Get(int threads)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(threads, out var limits)) Cache[threads] = limits = MachineLimits.Measure(threads);
            return limits;
        }
    }
}
