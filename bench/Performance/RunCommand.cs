using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Performance;

/// <summary>
/// `bench run`: measures the machine's limits, then times the cases (the preset, or the user's) and prints
/// ms, GFLOP/s (GB/s of K+V for decode) and the fraction of the measured limit.
/// </summary>
internal sealed class RunCommand : Command<RunSettings>
{
    public override int Execute(CommandContext context, RunSettings settings, CancellationToken cancellationToken)
    {
        if (settings.Grid) return GridRun.Execute(settings, cancellationToken);
        var backend = settings.Backend == "cpu" ? (AttentionBackend)CpuBackend.Default : Attention.Using(AttentionEngine.Backend.Reference);
        var limits = MachineLimitsCache.Get(settings.Threads);
        var rows = new List<TimedResult>();
        foreach (var c in PerformanceCase.ParseList(settings.Shapes))
        {
            foreach (string type in TypesFor(c, settings.Types))
            {
                cancellationToken.ThrowIfCancellationRequested();
                rows.AddRange(type switch
                {
                    "f16" => Time<Half>(c, backend, settings, limits),
                    "bf16" => Time<BFloat16>(c, backend, settings, limits),
                    _ => Time<float>(c, backend, settings, limits),
                });
            }
        }
        string isa = backend is CpuBackend cpu ? cpu.ResolvedIsa.ToString() : "scalar";
        var document = new ResultsDocument("run", ResultsDocument.CpuModel(), isa, settings.Threads, limits.PeakGflops, limits.BandwidthGBs, rows);
        if (settings.Json)
        {
            Console.WriteLine(document.ToJson());
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]bench run[/]: {Markup.Escape(backend.Name)} ({isa}), {settings.Threads} threads, {Markup.Escape(document.Cpu)}");
        AnsiConsole.MarkupLine($"measured limits: fp32 FMA peak {limits.PeakGflops:F0} GFLOP/s, memory {limits.BandwidthGBs:F1} GB/s");
        var table = new Table().AddColumns("case", "type", "ms", "rate", "of limit");
        foreach (var r in rows)
            table.AddRow(Markup.Escape(r.Case), r.Type, r.Milliseconds.ToString("F2"), $"{r.Rate:F1} {r.Unit}", r.FractionOfLimit.ToString("P0"));
        AnsiConsole.Write(table);
        DropoutCost.Print(rows);
        return 0;
    }

    private static IEnumerable<string> TypesFor(PerformanceCase c, string types) =>
        types == "auto" ? (c.Decode ? ["f32", "bf16"] : ["f32"]) : types.Split(',').Select(t => t.Trim());

    /// <summary>One row, or two with --dropout (the plain call and the one with dropout, timed interleaved).</summary>
    private static IEnumerable<TimedResult> Time<T>(PerformanceCase c, AttentionBackend backend, RunSettings settings, MachineLimits limits) where T : unmanaged
    {
        using var tensors = CaseTensors<T>.Create(c);
        var mask = c.Causal ? Mask.Causal() : null;
        ulong step = 0;
        Action plain = () => backend.Forward<T>(tensors.Q, tensors.K, tensors.V, tensors.Output, new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = settings.Threads });
        Action dropped = () => backend.Forward<T>(tensors.Q, tensors.K, tensors.V, tensors.Output,
            new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = settings.Threads, Dropout = settings.DropoutAt(step++) });
        double[] seconds = settings.Dropout is null ? [Timing.MedianSeconds(plain, settings.Seconds)] : Timing.MedianSecondsInterleaved([plain, dropped], settings.Seconds);
        string type = ElementTypes.ShortName<T>();
        int size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        var rows = new List<TimedResult> { TimedResult.Of(backend.Name, c, type, seconds[0], limits, size) };
        // The rate of the call with dropout counts the same FLOPs: the mask's cost shows as a lower rate.
        if (settings.Dropout is { } p) rows.Add(TimedResult.Of(backend.Name, c, type, seconds[1], limits, size) with { Case = $"{c.Name} {DropoutCost.Label(p)}" });
        return rows;
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
