using ScottPlot;
using SkiaSharp;

namespace AttentionEngine.Bench.Plotting;

/// <summary>
/// Attention weights as heatmaps in one PNG: a panel per head and one for their average, query positions down, key
/// positions across, each with its colour bar.
/// </summary>
internal static class HeadHeatmaps
{
    private const int PanelWidth = 420, PanelHeight = 380;

    /// <param name="panels">Titles and [queries, keys] probabilities.</param>
    public static void Write(string path, IReadOnlyList<(string Title, double[,] Weights)> panels)
    {
        int columns = Math.Min(4, panels.Count), rows = (panels.Count + columns - 1) / columns;
        using var surface = SKSurface.Create(new SKImageInfo(columns * PanelWidth, rows * PanelHeight));
        surface.Canvas.Clear(SKColors.White);
        for (int n = 0; n < panels.Count; n++)
        {
            var (title, weights) = panels[n];
            int queries = weights.GetLength(0), keys = weights.GetLength(1);
            var plot = new Plot();
            var heatmap = plot.Add.Heatmap(weights);
            heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
            heatmap.Extent = new CoordinateRect(-0.5, keys - 0.5, -0.5, queries - 0.5); // cell (i, j) centred on (j, i)
            plot.Add.ColorBar(heatmap);
            plot.Title(title);
            plot.XLabel("key position");
            plot.YLabel("query position");
            plot.Axes.InvertY();
            // Each panel on its own surface (a plot's render fills the whole canvas it is given), then placed.
            using var panel = SKSurface.Create(new SKImageInfo(PanelWidth, PanelHeight));
            plot.Render(panel.Canvas, PanelWidth, PanelHeight);
            using var picture = panel.Snapshot();
            surface.Canvas.DrawImage(picture, n % columns * PanelWidth, n / columns * PanelHeight);
        }
        using var image = surface.Snapshot();
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        using var file = File.Create(path);
        png.SaveTo(file);
    }
}
