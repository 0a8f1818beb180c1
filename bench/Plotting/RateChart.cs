using ScottPlot;

namespace AttentionEngine.Bench.Plotting;

internal sealed record ChartSeries(string Name, (double X, double Y)[] Points);

/// <summary>One line chart: a rate against a length per backend, with the machine limit as a dashed line.</summary>
internal static class RateChart
{
    public static void Write(string path, string title, string xLabel, string unit, IReadOnlyList<ChartSeries> series,
        double limit, string limitLabel)
    {
        var plot = new Plot();
        foreach (var s in series)
        {
            var scatter = plot.Add.Scatter(s.Points.Select(p => p.X).ToArray(), s.Points.Select(p => p.Y).ToArray());
            scatter.LegendText = s.Name;
            scatter.LineWidth = 2;
            scatter.MarkerSize = 7;
        }
        var line = plot.Add.HorizontalLine(limit);
        line.LegendText = $"{limitLabel} ({limit:F0} {unit.Split(' ')[0]})";
        line.LinePattern = LinePattern.Dashed;
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(unit);
        // The probe's limit can read low on a noisy machine: never cut off a measured point.
        double top = Math.Max(limit, series.SelectMany(x => x.Points).Select(p => p.Y).DefaultIfEmpty(0).Max());
        plot.Axes.SetLimitsY(0, top * 1.1);
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(path, 900, 560);
    }
}
