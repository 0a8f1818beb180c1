using System.ComponentModel;
using System.Numerics.Tensors;
using AttentionEngine.Bench.Peers;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Kernels.Cpu.Threading;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Gemm;

public sealed class GemmSettings : ThreadedSettings
{
    [CommandOption("--shapes <SHAPES>")]
    // Descriptions are Spectre markup: a literal bracket is written twice.
    [Description("Products separated by ';': MxNxK, optionally 'linear' (B as an [[N, K]] weight) and/or 'gradient' (A stored as [[K, M]], "
        + "a weight gradient's dPᵀ · X). Default: the issue's goal range and a layer backward's weight gradient.")]
    public string Shapes { get; init; } = "1024x1024x1024 linear; 2048x2048x2048 linear; 4096x4096x4096 linear; 2048x2048x2048; 2048x3072x1024 linear; 1024x1024x2048 gradient";

    [CommandOption("--weights <TYPES>")]
    [Description("Element types of B (the weight), comma-separated: f32, bf16, f16. A and C are fp32. Default: f32,bf16.")]
    public string Weights { get; init; } = "f32,bf16";

    [CommandOption("--no-peer")]
    [Description("Skip ONNX Runtime's Gemm (timed on fp32 weights).")]
    public bool NoPeer { get; init; }

    public override ValidationResult Validate()
    {
        try { _ = GemmCase.ParseList(Shapes); }
        catch (FormatException e) { return ValidationResult.Error(e.Message); }
        var bad = Weights.Split(',', StringSplitOptions.TrimEntries).Where(t => t is not ("f32" or "bf16" or "f16")).ToList();
        return bad.Count > 0 ? ValidationResult.Error($"--weights takes f32, bf16, f16; got '{string.Join(", ", bad)}'.")
            : base.Validate();
    }
}

/// <summary>
/// `bench gemm`: our packed GEMM (<see cref="MatMul"/>) on the projection shapes, against the machine's measured FMA
/// peak and, in the same run, ONNX Runtime's Gemm (MLAS sgemm) on the same fp32 memory.
/// </summary>
internal sealed class GemmCommand : Command<GemmSettings>
{
    public override int Execute(CommandContext context, GemmSettings settings, CancellationToken cancellationToken)
    {
        var limits = MachineLimitsCache.Get(settings.Threads);
        AnsiConsole.MarkupLine($"[bold]bench gemm[/]: {settings.Threads} threads, {Markup.Escape(ResultsDocument.CpuModel())}, {CpuBackend.Default.ResolvedIsa}");
        AnsiConsole.MarkupLine($"measured fp32 FMA peak {limits.PeakGflops:F0} GFLOP/s; A and C fp32, B as listed; FLOPs = 2·M·N·K");
        var table = new Table().AddColumns("case", "B", "ms", "rate", "of peak", "ONNX Runtime ms", "ours / ORT speed");
        foreach (var c in GemmCase.ParseList(settings.Shapes))
            foreach (var type in settings.Weights.Split(',', StringSplitOptions.TrimEntries))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var (seconds, peerSeconds) = type switch
                {
                    "bf16" => Time<BFloat16>(c, settings),
                    "f16" => Time<Half>(c, settings),
                    _ => Time<float>(c, settings),
                };
                double gflops = c.Flops / seconds / 1e9;
                table.AddRow(c.Name, type, $"{seconds * 1e3:F2}", $"{gflops:F1} GFLOP/s", $"{gflops / limits.PeakGflops:P0}",
                    peerSeconds is double p ? $"{p * 1e3:F2}" : "", peerSeconds is double q ? $"{q / seconds:F2}x" : "");
            }
        AnsiConsole.Write(table);
        if (!settings.NoPeer) AnsiConsole.MarkupLine($"peer: ONNX Runtime {OnnxAttentionPeer.Version} Gemm (fp32 B only)");
        return 0;
    }

    private static (double Ours, double? Peer) Time<TB>(GemmCase c, GemmSettings settings) where TB : unmanaged
    {
        using var a = c.TransposedA ? TensorRandom.Create<float>(1, ValueDistribution.Normal, c.K, c.M) : TensorRandom.Create<float>(1, ValueDistribution.Normal, c.M, c.K);
        // A gradient's A is the transpose of what is stored: a view with swapped strides, never a copy.
        TensorSpan<float> AView() => c.TransposedA ? TensorLayout.View(a.Storage, [c.M, c.K], [1, c.M]) : a.AsTensorSpan();
        using var b = c.Linear ? TensorRandom.Create<TB>(2, ValueDistribution.Normal, c.N, c.K) : TensorRandom.Create<TB>(2, ValueDistribution.Normal, c.K, c.N);
        using var y = NativeTensor<float>.Zeros(c.M, c.N);
        int threads = settings.Threads;
        Action ours = c.Linear
            ? () => MatMul.Linear<float, TB, float>(AView(), b.AsTensorSpan(), y.AsTensorSpan(), maxDegreeOfParallelism: threads)
            : () => MatMul.Multiply<float, TB, float>(AView(), b.AsTensorSpan(), y.AsTensorSpan(), maxDegreeOfParallelism: threads);
        if (settings.NoPeer || typeof(TB) != typeof(float)) return (Timing.MedianSeconds(ours, settings.Seconds), null);
        using var peer = new OnnxGemmPeer(c, a, (NativeTensor<float>)(object)b, y, threads);
        // Call by call in turn, so the machine's drift falls on both alike; both sides' workers stop spinning when
        // their call returns (OrtTensors.Options, CpuWorkerPool.StopIdleSpin).
        using var fair = CpuWorkerPool.StopIdleSpin();
        double[] medians = Timing.MedianSecondsInterleaved([ours, peer.Run], settings.Seconds);
        return (medians[0], medians[1]);
    }
}
