using AttentionEngine.Bench.Performance;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Backward;

public sealed class BackwardSettings : DropoutTimingSettings
{
    [CommandOption("--shapes <SHAPES>")]
    [System.ComponentModel.Description("Cases separated by ';' (see `run --shapes`). Default: the backward goal cases.")]
    public override string Shapes { get; init; } = "B1 H8 N2048 D64; B1 H8 N2048 D128; B1 H8 N2048 D64 causal; B1 H8 N2048 D128 causal";
}

/// <summary>
/// `bench backward`: the CPU backward pass (fp32), FLOPs = 2.5 × the forward's 4·B·H·visible pairs·D, against the
/// machine's measured FMA peak.
/// </summary>
internal sealed class BackwardCommand : Command<BackwardSettings>
{
    public override int Execute(CommandContext context, BackwardSettings settings, CancellationToken cancellationToken)
    {
        var limits = MachineLimitsCache.Get(settings.Threads);
        var backend = CpuBackend.Default;
        var rows = new List<TimedResult>();
        foreach (var c in PerformanceCase.ParseList(settings.Shapes))
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var tensors = CaseTensors<float>.Create(c);
            using var lse = NativeTensor<float>.Zeros(c.Batch, c.Heads, c.QueryLength);
            using var dOutput = TensorRandom.Create<float>(4, ValueDistribution.Normal, c.Batch, c.Heads, c.QueryLength, c.HeadDim);
            using var dq = NativeTensor<float>.Zeros(c.Batch, c.Heads, c.QueryLength, c.HeadDim);
            using var dk = NativeTensor<float>.Zeros(c.Batch, c.KvHeads, c.KeyLength, c.HeadDim);
            using var dv = NativeTensor<float>.Zeros(c.Batch, c.KvHeads, c.KeyLength, c.HeadDim);
            var mask = c.Causal ? Mask.Causal() : null;
            // The saved output and LSE are the plain forward's: a backward's cost does not depend on their values.
            backend.Forward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output, new AttentionOptions { Mask = mask, Lse = lse.AsTensorSpan() });
            Action plain = () => backend.Backward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output, lse, dOutput, dq, dk, dv,
                new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = settings.Threads });
            var dropout = settings.DropoutAt(1);
            Action dropped = () => backend.Backward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output, lse, dOutput, dq, dk, dv,
                new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = settings.Threads, Dropout = dropout });
            double[] seconds = settings.Dropout is null ? [Timing.MedianSeconds(plain, settings.Seconds)] : Timing.MedianSecondsInterleaved([plain, dropped], settings.Seconds);
            for (int n = 0; n < seconds.Length; n++)
            {
                // 2.5 × forward FLOPs, by the convention FlashAttention reports backward throughput with.
                var row = TimedResult.Of(backend.Name + " backward", c, "f32", seconds[n] / 2.5, limits, sizeof(float));
                rows.Add(row with { Milliseconds = seconds[n] * 1e3, Case = n == 0 ? row.Case : $"{row.Case} {DropoutCost.Label(dropout.Probability)}" });
            }
        }
        var document = new ResultsDocument("backward", ResultsDocument.CpuModel(), backend.ResolvedIsa.ToString(), settings.Threads,
            limits.PeakGflops, limits.BandwidthGBs, rows);
        if (settings.Json)
        {
            Console.WriteLine(document.ToJson());
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]bench backward[/]: {backend.Name} ({backend.ResolvedIsa}), {settings.Threads} threads, fp32, {Markup.Escape(document.Cpu)}");
        AnsiConsole.MarkupLine($"measured fp32 FMA peak {limits.PeakGflops:F0} GFLOP/s; FLOPs = 2.5 x forward");
        var table = new Table().AddColumns("case", "ms", "rate", "of peak");
        foreach (var r in rows) table.AddRow(Markup.Escape(r.Case), r.Milliseconds.ToString("F2"), $"{r.Rate:F1} {r.Unit}", r.FractionOfLimit.ToString("P0"));
        AnsiConsole.Write(table);
        DropoutCost.Print(rows);
        return 0;
    }
}
