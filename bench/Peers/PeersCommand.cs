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
        var rows = PeerComparison.CompareAll(PerformanceCase.ParseList(settings.Shapes), ours, settings.Threads, settings.Seconds, limits,
            settings.Json, "peers", cancellationToken);

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
        AnsiConsole.Write(PeerComparison.Table(rows));
        return 0;
    }
}
