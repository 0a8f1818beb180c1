using System.ComponentModel;
using System.Numerics.Tensors;
using AttentionEngine.Bench.Peers;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu.Threading;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Layer;

public sealed class LayerSettings : ThreadedSettings
{
    [CommandOption("--shapes <SHAPES>")]
    [Description("Layer cases separated by ';', e.g. 'B1 S2048 E1024 H16 KV4 causal'; 'none' to time decode steps only. Default: the issue's goal cases.")]
    public string Shapes { get; init; } = "B1 S2048 E1024 H16; B1 S2048 E1024 H16 KV4; B1 S2048 E1024 H16 causal";

    [CommandOption("--weights <TYPES>")]
    [Description("Weight element types, comma-separated: f32, bf16 (activations fp32). Default: f32,bf16.")]
    public string Weights { get; init; } = "f32,bf16";

    [CommandOption("--no-peer")]
    [Description("Skip the ONNX Runtime graph (timed with fp32 weights).")]
    public bool NoPeer { get; init; }

    [CommandOption("--decode <CASES>")]
    [Description("Decode steps separated by ';', e.g. 'B1 E1024 H16 KV4 L4096' (one new token per row over L cached tokens), timed with fp32 and bf16 caches; 'none' to skip.")]
    public string Decode { get; init; } = "B1 E1024 H16 KV4 L4096; B8 E1024 H16 KV4 L1024";

    [CommandOption("--no-backward")]
    [Description("Skip timing the layer's backward pass.")]
    public bool NoBackward { get; init; }

    [CommandOption("--page-size <N>")]
    [Description("Tokens per page of the paged caches (pages in order, and fragmented) timed beside the contiguous one; 0 to skip them. Default: 256.")]
    public int PageSize { get; init; } = 256;

    public override ValidationResult Validate()
    {
        try
        {
            if (Shapes != "none") _ = LayerCase.ParseList(Shapes);
            if (Decode != "none") _ = DecodeCase.ParseList(Decode);
        }
        catch (FormatException e) { return ValidationResult.Error(e.Message); }
        var bad = Weights.Split(',', StringSplitOptions.TrimEntries).Where(t => t is not ("f32" or "bf16")).ToList();
        return bad.Count > 0 ? ValidationResult.Error($"--weights takes f32, bf16; got '{string.Join(", ", bad)}'.")
            : PageSize < 0 ? ValidationResult.Error($"--page-size must be 0 or more; got {PageSize}.")
            : base.Validate();
    }
}

/// <summary>
/// `bench layer`: a <see cref="MultiHeadAttention{TWeight}"/> forward (projections + attention + output projection)
/// against the measured FMA peak and, in the same run and on the same fp32 weights and input, the layer as an ONNX
/// Runtime graph (MatMul/Add projections and the Attention operator). Two alternating rounds; each side's better median.
/// </summary>
internal sealed class LayerCommand : Command<LayerSettings>
{
    public override int Execute(CommandContext context, LayerSettings settings, CancellationToken cancellationToken)
    {
        var limits = MachineLimitsCache.Get(settings.Threads);
        AnsiConsole.MarkupLine($"[bold]bench layer[/]: {settings.Threads} threads, {Markup.Escape(ResultsDocument.CpuModel())}, {CpuBackend.Default.ResolvedIsa}");
        AnsiConsole.MarkupLine($"measured fp32 FMA peak {limits.PeakGflops:F0} GFLOP/s; fp32 activations; FLOPs = projections + 4·S·keys·D per head");
        var cases = settings.Shapes == "none" ? [] : LayerCase.ParseList(settings.Shapes);
        var table = new Table().AddColumns("case", "weights", "ms", "rate", "of peak", "ONNX Runtime ms", "ours / ORT speed", "max |diff|");
        foreach (var c in cases)
            foreach (var type in settings.Weights.Split(',', StringSplitOptions.TrimEntries))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var r = type == "bf16" ? Time<BFloat16>(c, settings) : Time<float>(c, settings);
                double gflops = c.Flops / r.Ours / 1e9;
                table.AddRow(c.Name, type, $"{r.Ours * 1e3:F1}", $"{gflops:F1} GFLOP/s", $"{gflops / limits.PeakGflops:P0}",
                    r.Peer is double p ? $"{p * 1e3:F1}" : "", r.Peer is double q ? $"{q / r.Ours:F2}x" : "", r.MaxDifference is double d ? $"{d:G2}" : "");
            }
        if (cases.Count > 0) AnsiConsole.Write(table);
        if (!settings.NoBackward && cases.Count > 0)
        {
            var backward = new Table().AddColumns("backward", "weights", "from", "ms", "rate", "of peak");
            foreach (var c in cases)
                foreach (var type in settings.Weights.Split(',', StringSplitOptions.TrimEntries))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var (recomputing, saved) = type == "bf16" ? TimeBackward<BFloat16>(c, settings) : TimeBackward<float>(c, settings);
                    foreach (var (from, seconds) in new[] { ("input (recomputes)", recomputing), ("saved activations", saved) })
                    {
                        double gflops = c.BackwardFlops / seconds / 1e9;
                        backward.AddRow(c.Name, type, from, $"{seconds * 1e3:F1}", $"{gflops:F1} GFLOP/s", $"{gflops / limits.PeakGflops:P0}");
                    }
                }
            AnsiConsole.MarkupLine("backward: input and parameter gradients; FLOPs = 2 x projections + 2.5 x attention (a recomputed forward not counted); " +
                "from the input it runs the projections and attention forward again, from a training forward's saved activations it does not");
            AnsiConsole.Write(backward);
        }
        if (settings.Decode != "none")
        {
            var decode = new Table().AddColumns("decode step", "weights", "cache", "storage", "ms per step", "K+V read", "weights read", "all bytes", "of bandwidth",
                "paged / contiguous rate");
            foreach (var c in DecodeCase.ParseList(settings.Decode))
                foreach (var type in settings.Weights.Split(',', StringSplitOptions.TrimEntries))
                    foreach (var cache in new[] { "f32", "bf16" })
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        var (contiguous, paged, fragmented, cacheBytes, weightBytes) = (type, cache) switch
                        {
                            ("bf16", "bf16") => DecodeTiming.Time<BFloat16, BFloat16>(c, settings, settings.PageSize),
                            ("bf16", _) => DecodeTiming.Time<BFloat16, float>(c, settings, settings.PageSize),
                            (_, "bf16") => DecodeTiming.Time<float, BFloat16>(c, settings, settings.PageSize),
                            _ => DecodeTiming.Time<float, float>(c, settings, settings.PageSize),
                        };
                        void Row(string storage, double seconds, string ratio)
                        {
                            double total = (cacheBytes + weightBytes) / seconds / 1e9;
                            decode.AddRow(c.Name, type, cache, storage, $"{seconds * 1e3:F3}", $"{cacheBytes / seconds / 1e9:F1} GB/s",
                                $"{weightBytes / seconds / 1e9:F1} GB/s", $"{total:F1} GB/s", $"{total / limits.BandwidthGBs:P0}", ratio);
                        }
                        Row("contiguous", contiguous, "");
                        if (paged is double pagedSeconds) Row($"{settings.PageSize}-token pages", pagedSeconds, $"{contiguous / pagedSeconds:P0}");
                        if (fragmented is double fragmentedSeconds)
                            Row($"{settings.PageSize}-token pages, fragmented", fragmentedSeconds, $"{contiguous / fragmentedSeconds:P0}");
                    }
            AnsiConsole.MarkupLine($"decode: one token per row appended to the cache and truncated back after each step; contiguous and paged steps of one layer timed call by call in turn (fragmented: each sequence's pages interleaved with another's); measured memory bandwidth {limits.BandwidthGBs:F1} GB/s");
            AnsiConsole.Write(decode);
        }
        if (!settings.NoPeer) AnsiConsole.MarkupLine($"peer: ONNX Runtime {OnnxAttentionPeer.Version}, MatMul/Add projections + Attention (opset 23), fp32 weights only");
        return 0;
    }

    private static (double Recomputing, double Saved) TimeBackward<TWeight>(LayerCase c, LayerSettings settings) where TWeight : unmanaged
    {
        int e = c.EmbedDim, hd = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        var random = new Random(43);
        TWeight[] Values(int n, double scale) => Enumerable.Range(0, n).Select(_ => ElementTypes.FromSingle<TWeight>((float)((random.NextDouble() * 2 - 1) * scale))).ToArray();
        using var layer = new MultiHeadAttention<TWeight>(new MultiHeadAttentionConfig { EmbedDim = e, Heads = c.Heads, KvHeads = c.KvHeads });
        double w = 1 / Math.Sqrt(e);
        layer.Load(new ReadOnlyTensorSpan<TWeight>(Values(hd * e, w), [hd, e], []), new ReadOnlyTensorSpan<TWeight>(Values(kv * e, w), [kv, e], []),
            new ReadOnlyTensorSpan<TWeight>(Values(kv * e, w), [kv, e], []), new ReadOnlyTensorSpan<TWeight>(Values(e * hd, w), [e, hd], []),
            Values(hd, 0.1), Values(kv, 0.1), Values(kv, 0.1), Values(e, 0.1));
        using var x = TensorRandom.Create<float>(8, ValueDistribution.Normal, c.Batch, c.Length, e);
        using var dy = TensorRandom.Create<float>(9, ValueDistribution.Normal, c.Batch, c.Length, e);
        using var dx = NativeTensor<float>.Zeros(c.Batch, c.Length, e);
        var gradients = layer.CreateGradients();
        var mask = c.Causal ? Mask.Causal() : null;
        int threads = settings.Threads;
        var options = new MultiHeadAttentionOptions { Mask = mask, MaxDegreeOfParallelism = threads };
        // The training forward once, untimed; the backward only reads what it saved, so every timed call does the same work.
        using var activations = layer.CreateActivations();
        using var y = NativeTensor<float>.Zeros(c.Batch, c.Length, e);
        layer.Forward<float>(x.AsReadOnlyTensorSpan(), y.AsTensorSpan(), activations, options);
        // The two backwards call by call in turn, so the machine's drift falls on both alike.
        double[] medians = Timing.MedianSecondsInterleaved([
            () => layer.Backward<float>(x.AsReadOnlyTensorSpan(), dy.AsReadOnlyTensorSpan(), dx.AsTensorSpan(), gradients,
                new MultiHeadAttentionOptions { Mask = mask, MaxDegreeOfParallelism = threads }),
            () => layer.Backward<float>(activations, dy.AsReadOnlyTensorSpan(), dx.AsTensorSpan(), gradients,
                new MultiHeadAttentionOptions { Mask = mask, MaxDegreeOfParallelism = threads })], settings.Seconds);
        return (medians[0], medians[1]);
    }

    private sealed record Timed(double Ours, double? Peer, double? MaxDifference);

    private static Timed Time<TWeight>(LayerCase c, LayerSettings settings) where TWeight : unmanaged
    {
        int e = c.EmbedDim, hd = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        var random = new Random(42);
        float[] Matrix(int rows, int columns) => Enumerable.Range(0, rows * columns).Select(_ => (float)((random.NextDouble() * 2 - 1) / Math.Sqrt(columns))).ToArray();
        float[] Vector(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5) / 10).ToArray();
        // Weights rounded to TWeight once, so both sides multiply the same values.
        float[] Round(float[] values) => values.Select(x => ElementTypes.ToSingle(ElementTypes.FromSingle<TWeight>(x))).ToArray();
        var (wq, wk, wv, wo) = (Round(Matrix(hd, e)), Round(Matrix(kv, e)), Round(Matrix(kv, e)), Round(Matrix(e, hd)));
        var (bq, bk, bv, bo) = (Round(Vector(hd)), Round(Vector(kv)), Round(Vector(kv)), Round(Vector(e)));
        TWeight[] W(float[] values) => values.Select(ElementTypes.FromSingle<TWeight>).ToArray();

        using var layer = new MultiHeadAttention<TWeight>(new MultiHeadAttentionConfig { EmbedDim = e, Heads = c.Heads, KvHeads = c.KvHeads });
        layer.Load(new ReadOnlyTensorSpan<TWeight>(W(wq), [hd, e], []), new ReadOnlyTensorSpan<TWeight>(W(wk), [kv, e], []),
            new ReadOnlyTensorSpan<TWeight>(W(wv), [kv, e], []), new ReadOnlyTensorSpan<TWeight>(W(wo), [e, hd], []), W(bq), W(bk), W(bv), W(bo));
        using var x = TensorRandom.Create<float>(7, ValueDistribution.Normal, c.Batch, c.Length, e);
        using var y = NativeTensor<float>.Zeros(c.Batch, c.Length, e);
        var mask = c.Causal ? Mask.Causal() : null;
        int threads = settings.Threads;
        void Ours() => layer.Forward<float>(x.AsReadOnlyTensorSpan(), y.AsTensorSpan(), new MultiHeadAttentionOptions { Mask = mask, MaxDegreeOfParallelism = threads });
        if (settings.NoPeer || typeof(TWeight) != typeof(float))
            return new Timed(Timing.MedianSeconds(Ours, settings.Seconds), null, null);

        NativeTensor<float> Tensor(float[] values, params nint[] lengths)
        {
            var t = NativeTensor<float>.Zeros(lengths);
            values.CopyTo(t.Storage);
            return t;
        }
        float[] Transpose(float[] m, int rows, int columns)
        {
            var t = new float[m.Length];
            for (int r = 0; r < rows; r++)
                for (int col = 0; col < columns; col++) t[col * rows + r] = m[r * columns + col];
            return t;
        }
        var inputs = new List<NativeTensor<float>>
        {
            Tensor(x.Storage.ToArray(), c.Batch, c.Length, e), Tensor(Transpose(wq, hd, e), e, hd), Tensor(Transpose(wk, kv, e), e, kv),
            Tensor(Transpose(wv, kv, e), e, kv), Tensor(Transpose(wo, e, hd), hd, e), Tensor(bq, hd), Tensor(bk, kv), Tensor(bv, kv), Tensor(bo, e),
        };
        using var peerOutput = NativeTensor<float>.Zeros(c.Batch, c.Length, e);
        try
        {
            using var peer = new OnnxLayerPeer(c, inputs, peerOutput, threads);
            // Call by call in turn: this machine's speed drifts by tens of percent within a minute, and timing one side
            // after the other put the same build at 0.79-1.14x ONNX Runtime in consecutive runs. Both sides' workers stop
            // spinning when their call returns (OrtTensors.Options, CpuWorkerPool.StopIdleSpin).
            using var fair = CpuWorkerPool.StopIdleSpin();
            double[] medians = Timing.MedianSecondsInterleaved([Ours, peer.Run], settings.Seconds);
            double ours = medians[0], theirs = medians[1];
            double difference = 0;
            Span<float> a = y.Storage, b = peerOutput.Storage;
            for (int n = 0; n < a.Length; n++) difference = Math.Max(difference, Math.Abs(a[n] - b[n]));
            return new Timed(ours, theirs, difference);
        }
        finally
        {
            foreach (var t in inputs) t.Dispose();
        }
    }
}
