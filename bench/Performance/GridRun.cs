using System.Globalization;
using System.Text;
using AttentionEngine.Bench.Peers;
using AttentionEngine.Bench.Plotting;
using Spectre.Console;

namespace AttentionEngine.Bench.Performance;

/// <summary>
/// `bench run --grid`: every <see cref="GridCases"/> case through our CPU backend and ONNX Runtime's Attention, back
/// to back, in one run; a table of times and the ratio, optionally Markdown, JSON and one chart per family.
/// </summary>
internal static class GridRun
{
    public static int Execute(RunSettings settings, CancellationToken cancellationToken)
    {
        var limits = MachineLimitsCache.Get(settings.Threads);
        var ours = CpuBackend.Default;
        var rows = PeerComparison.CompareAll(GridCases.All(), ours, settings.Threads, settings.Seconds, limits, settings.Json, "grid", cancellationToken);

        var document = new ResultsDocument("grid", ResultsDocument.CpuModel(), ours.ResolvedIsa.ToString(), settings.Threads, limits.PeakGflops,
            limits.BandwidthGBs, rows);
        if (settings.Markdown is not null) File.WriteAllText(settings.Markdown, Markdown(document));
        var charts = settings.Charts is null ? [] : WriteCharts(document, settings.Charts);
        if (settings.Json)
        {
            Console.WriteLine(document.ToJson());
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]bench run --grid[/]: {ours.Name} ({ours.ResolvedIsa}) vs ONNX Runtime {Markup.Escape(OnnxAttentionPeer.Version)}, " +
                               $"fp32, {settings.Threads} threads, {Markup.Escape(document.Cpu)}");
        AnsiConsole.MarkupLine($"measured limits: fp32 FMA peak {limits.PeakGflops:F0} GFLOP/s, memory {limits.BandwidthGBs:F1} GB/s");
        AnsiConsole.Write(PeerComparison.Table(rows));
        foreach (var path in charts) AnsiConsole.MarkupLine($"wrote [green]{Markup.Escape(path)}[/]");
        if (settings.Markdown is not null) AnsiConsole.MarkupLine($"wrote [green]{Markup.Escape(settings.Markdown)}[/]");
        return 0;
    }

    /// <summary>The table as Markdown, with the slowest ratio called out.</summary>
    internal static string Markdown(ResultsDocument document)
    {
        var text = new StringBuilder();
        var pairs = document.Rows.Chunk(2).ToArray();
        text.AppendLine(CultureInfo.InvariantCulture,
            $"{document.Cpu}, {document.Isa}, {document.Threads} threads; measured fp32 FMA peak {document.PeakGflops:F0} GFLOP/s, memory {document.BandwidthGBs:F1} GB/s.");
        text.AppendLine();
        text.AppendLine("| case | ours ms | ours rate | ONNX Runtime ms | ONNX Runtime rate | ours faster by |");
        text.AppendLine("|---|---|---|---|---|---|");
        foreach (var pair in pairs)
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {pair[0].Case} | {pair[0].Milliseconds:F3} | {pair[0].Rate:F1} {pair[0].Unit} | {pair[1].Milliseconds:F3} | {pair[1].Rate:F1} {pair[1].Unit} | {pair[1].Milliseconds / pair[0].Milliseconds:F2}x |");
        if (pairs.Length > 0)
        {
            var slowest = pairs.MinBy(p => p[1].Milliseconds / p[0].Milliseconds)!;
            int behind = pairs.Count(p => p[1].Milliseconds < p[0].Milliseconds);
            text.AppendLine();
            text.AppendLine(CultureInfo.InvariantCulture,
                $"{behind} of {pairs.Length} points slower than ONNX Runtime; the worst is {slowest[0].Case} at {slowest[1].Milliseconds / slowest[0].Milliseconds:F2}x.");
        }
        return text.ToString();
    }

    /// <summary>One chart per (D, mask) family against N, and one for decode against Lk; ours and ONNX Runtime as lines.</summary>
    private static List<string> WriteCharts(ResultsDocument document, string folder)
    {
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        foreach (var family in document.Rows.GroupBy(r => r.Unit == "GFLOP/s" ? $"grid_d{r.HeadDim}{(r.Causal ? "_causal" : "")}" : $"grid_decode_d{r.HeadDim}"))
        {
            bool decode = family.First().Unit != "GFLOP/s";
            var series = family.GroupBy(r => r.Backend)
                .Select(g => new ChartSeries(g.Key, g.Select(r => (X: (double)(decode ? r.KeyLength : r.QueryLength), Y: r.Rate)).OrderBy(p => p.X).ToArray()))
                .ToArray();
            string path = Path.Combine(folder, family.Key + ".png");
            var first = family.First();
            string title = decode
                ? $"decode B1 H32 Hkv8 Lq1 D{first.HeadDim} fp32 ({document.Threads} threads, {document.Cpu})"
                : $"B·H·N = {GridCases.Tokens} tokens, H8 D{first.HeadDim}{(first.Causal ? " causal" : "")} fp32 ({document.Threads} threads, {document.Cpu})";
            RateChart.Write(path, title, decode ? "key length Lk" : "sequence length N", first.Unit, series,
                decode ? document.BandwidthGBs : document.PeakGflops, decode ? "measured memory bandwidth" : "measured fp32 FMA peak");
            written.Add(path);
        }
        return written;
    }
}
