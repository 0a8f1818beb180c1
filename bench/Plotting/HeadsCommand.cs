using System.ComponentModel;
using System.Numerics.Tensors;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Plotting;

public sealed class HeadsSettings : CommandSettings
{
    [CommandArgument(0, "[PNG]")]
    [Description("File to write. Default: heads.png.")]
    public string Path { get; init; } = "heads.png";

    [CommandOption("--length <S>")]
    [Description("Tokens (query and key positions). Default: 48.")]
    public int Length { get; init; } = 48;

    [CommandOption("--embed <E>")]
    [Description("Model width. Default: 64.")]
    public int EmbedDim { get; init; } = 64;

    [CommandOption("--heads <H>")]
    [Description("Query heads (a panel each, plus their average). Default: 4.")]
    public int Heads { get; init; } = 4;

    [CommandOption("--causal")]
    [Description("Causal mask.")]
    public bool Causal { get; init; }

    [CommandOption("--seed <N>")]
    [Description("Seed of the random weights. Default: 1.")]
    public int Seed { get; init; } = 1;

    public override ValidationResult Validate() =>
        Length < 1 || Length > 4096 ? ValidationResult.Error($"--length must be 1..4096; got {Length}.")
        : Heads < 1 || EmbedDim < Heads || EmbedDim % Heads != 0 ? ValidationResult.Error($"--heads ({Heads}) must divide --embed ({EmbedDim}).")
        : ValidationResult.Success();
}

/// <summary>
/// `bench heads`: a MultiHeadAttention layer (random weights, rotary positions) over a sequence whose tokens repeat
/// with a period, so heads pick up positional and content patterns; its per-head attention weights and their average
/// (the layer's Weights and AverageWeights outputs) drawn as heatmaps in one PNG.
/// </summary>
internal sealed class HeadsCommand : Command<HeadsSettings>
{
    public override int Execute(CommandContext context, HeadsSettings settings, CancellationToken cancellationToken)
    {
        int s = settings.Length, e = settings.EmbedDim, h = settings.Heads;
        var random = new Random(settings.Seed);
        float[] Values(int n, double scale) => Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
        using var layer = new MultiHeadAttention<float>(new MultiHeadAttentionConfig { EmbedDim = e, Heads = h, Rotary = new RotaryEmbedding(RotaryLayout.HalfSplit) });
        double scale = 2 / Math.Sqrt(e);
        layer.Load(new ReadOnlyTensorSpan<float>(Values(e * e, scale), [e, e], []), new ReadOnlyTensorSpan<float>(Values(e * e, scale), [e, e], []),
            new ReadOnlyTensorSpan<float>(Values(e * e, scale), [e, e], []), new ReadOnlyTensorSpan<float>(Values(e * e, scale), [e, e], []),
            new float[e], new float[e], new float[e], new float[e]);
        // Tokens from a vocabulary of 7 random embeddings, repeating: content heads light up every 7th key.
        var vocabulary = Enumerable.Range(0, 7).Select(_ => Values(e, 1.5)).ToArray();
        var input = Enumerable.Range(0, s).SelectMany(t => vocabulary[t % 7]).ToArray();
        var weights = new float[h * s * s];
        var average = new float[s * s];
        layer.Forward<float>(new ReadOnlyTensorSpan<float>(input, [1, s, e], []), new TensorSpan<float>(new float[s * e], [1, s, e], []), new MultiHeadAttentionOptions
        {
            Mask = settings.Causal ? Mask.Causal() : null,
            Weights = new TensorSpan<float>(weights, [1, h, s, s], []),
            AverageWeights = new TensorSpan<float>(average, [1, s, s], []),
        });
        static double[,] Matrix(float[] values, int offset, int s)
        {
            var m = new double[s, s];
            for (int i = 0; i < s; i++)
                for (int j = 0; j < s; j++) m[i, j] = values[offset + i * s + j];
            return m;
        }
        var panels = Enumerable.Range(0, h).Select(head => ($"head {head}", Matrix(weights, head * s * s, s))).ToList();
        panels.Add(("average over heads", Matrix(average, 0, s)));
        HeadHeatmaps.Write(settings.Path, panels);
        AnsiConsole.MarkupLine($"wrote [bold]{Markup.Escape(settings.Path)}[/]: {h} heads and their average, {s} positions{(settings.Causal ? ", causal" : "")}");
        return 0;
    }
}
