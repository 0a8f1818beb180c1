using AttentionEngine.Bench.Performance;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Peers;

/// <summary>
/// `bench peers`: the same fp32 problems through our CPU backend and ONNX Runtime's CPU `Attention` operator, in one
/// run with the same threads: time ratio and the largest difference between the two outputs. (TorchSharp is not
/// compared: TorchSharp-cpu 0.107.0 does not load on Debian 12, it needs GLIBCXX_3.4.32.)
/// </summary>
internal sealed class PeersCommand : Command<PeersSettings>
{
    public override int Execute(CommandContext context, PeersSettings settings, CancellationToken cancellationToken)
    {
        var limits = MachineLimitsCache.Get(settings.Threads);
        var ours = CpuBackend.Default;
        var rows = new List<TimedResult>();
        var cases = PerformanceCase.ParseList(settings.Shapes);
        if (settings.Json)
        {
            // Standard output carries only the JSON document.
            foreach (var c in cases) rows.AddRange(Compare(c, ours, settings, limits));
        }
        else
        {
            AnsiConsole.Progress().AutoClear(true).HideCompleted(true).Start(progress =>
            {
                var task = progress.AddTask("peers", maxValue: cases.Count);
                foreach (var c in cases)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    task.Description = c.Name;
                    rows.AddRange(Compare(c, ours, settings, limits));
                    task.Increment(1);
                }
            });
        }

        var document = new ResultsDocument("peers", ResultsDocument.CpuModel(), ours.ResolvedIsa.ToString(), settings.Threads,
            limits.PeakGflops, limits.BandwidthGBs, rows);
        if (settings.Json)
        {
            Console.WriteLine(document.ToJson());
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]bench peers[/]: {ours.Name} ({ours.ResolvedIsa}) vs ONNX Runtime {Markup.Escape(OnnxAttentionPeer.Version)} " +
                               $"Attention (opset 23), fp32, {settings.Threads} threads, {Markup.Escape(document.Cpu)}");
        AnsiConsole.MarkupLine($"measured limits: fp32 FMA peak {limits.PeakGflops:F0} GFLOP/s, memory {limits.BandwidthGBs:F1} GB/s");
        var table = new Table().AddColumns("case", "ours ms", "ours rate", "ORT ms", "ORT rate", "ours faster by", "max |diff|");
        foreach (var pair in rows.Chunk(2))
        {
            var (us, them) = (pair[0], pair[1]);
            table.AddRow(us.Case, us.Milliseconds.ToString("F2"), $"{us.Rate:F1} {us.Unit}", them.Milliseconds.ToString("F2"),
                $"{them.Rate:F1} {them.Unit}", $"{them.Milliseconds / us.Milliseconds:F2}x", $"{them.MaxDifference:E1}");
        }
        AnsiConsole.Write(table);
        return 0;
    }

    private static IEnumerable<TimedResult> Compare(PerformanceCase c, CpuBackend ours, PeersSettings settings, MachineLimits limits) =>
        PeerComparison.Compare(c, ours, settings.Threads, settings.Seconds, limits);
}
