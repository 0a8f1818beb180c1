using AttentionEngine.Bench.Performance;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Plotting;

/// <summary>
/// `bench plot FOLDER --input run.json [--input peers.json]`: one PNG per shape family (everything but the sequence
/// length: batch, heads, D, mask, storage type), GFLOP/s against sequence length with one line per backend and the
/// machine's measured FMA peak as a horizontal line. Decode rows (GB/s) get their own chart against Lk, with the
/// measured bandwidth as the line.
/// </summary>
internal sealed class PlotCommand : Command<PlotSettings>
{
    public override int Execute(CommandContext context, PlotSettings settings, CancellationToken cancellationToken)
    {
        var documents = settings.Inputs.Select(ResultsDocument.Read).ToArray();
        Directory.CreateDirectory(settings.Folder);
        var families = documents
            .SelectMany(d => d.Rows.Select(r => (Document: d, Row: r)))
            .GroupBy(x => Family(x.Row))
            .OrderBy(g => g.Key, StringComparer.Ordinal);
        var written = new List<string>();
        foreach (var family in families)
        {
            var first = family.First();
            bool decode = first.Row.Unit != "GFLOP/s";
            var series = family
                .GroupBy(x => x.Row.Backend)
                .Select(g => new ChartSeries(g.Key, g
                    .GroupBy(x => decode ? x.Row.KeyLength : x.Row.QueryLength)
                    .OrderBy(p => p.Key)
                    .Select(p => (X: (double)p.Key, Y: p.Max(x => x.Row.Rate)))
                    .ToArray()))
                .ToArray();
            double limit = decode ? family.Max(x => x.Document.BandwidthGBs) : family.Max(x => x.Document.PeakGflops);
            string path = Path.Combine(settings.Folder, FileName(family.Key) + ".png");
            RateChart.Write(path, $"{family.Key} ({first.Document.Threads} threads, {first.Document.Cpu})",
                decode ? "key length Lk" : "sequence length", first.Row.Unit, series,
                limit, decode ? "measured memory bandwidth" : "measured fp32 FMA peak");
            written.Add(path);
        }
        if (settings.Json)
        {
            Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(new { command = "plot", written }));
            return 0;
        }
        foreach (var path in written) AnsiConsole.MarkupLine($"wrote [green]{Markup.Escape(path)}[/]");
        if (written.Count == 0) AnsiConsole.MarkupLine("[yellow]the inputs hold no rows; nothing to plot[/]");
        return 0;
    }

    /// <summary>The case without its sequence length(s), plus the storage type.</summary>
    private static string Family(TimedResult row)
    {
        string heads = row.KvHeads != row.Heads ? $"H{row.Heads} Hkv{row.KvHeads}" : $"H{row.Heads}";
        string lengths = row.Unit == "GFLOP/s" ? (row.QueryLength == row.KeyLength ? "" : $"Lk{row.KeyLength} ") : $"Lq{row.QueryLength} ";
        return $"B{row.Batch} {heads} {lengths}D{row.HeadDim}{(row.Causal ? " causal" : "")} {row.Type}";
    }

    private static string FileName(string family) =>
        string.Concat(family.Select(ch => char.IsLetterOrDigit(ch) ? ch : '_')).ToLowerInvariant();
}
