using System.Text.Json;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Bindings.Cuda;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Cuda;

/// <summary>
/// `bench cuda`: kernel time of the CUDA backend on device tensors (inputs stay on the GPU; CUDA events around a
/// batch of launches on one stream, so no copies are timed). FLOPs = 4·B·H·(visible pairs)·D, as everywhere in bench;
/// with --pass backward 2.5 times that (FlashAttention's count for dQ, dK, dV). bench/gpu/sdpa.py times PyTorch's scaled_dot_product_attention on the same grid
/// and bench/gpu/compare.py joins the two JSON outputs.
/// </summary>
internal sealed class CudaCommand : Command<CudaSettings>
{
    /// <summary>One timed case; <paramref name="KvGigabytesPerSecond"/> is K and V read once over the time (the decode figure).</summary>
    internal sealed record Row(string Case, string Dtype, double Milliseconds, double Tflops, double KvGigabytesPerSecond, int Launches);

    /// <summary>FlashAttention's benchmark grid: 16k tokens per batch, hidden size 2048 (H = 2048 / D).</summary>
    public static IReadOnlyList<PerformanceCase> Preset { get; } =
        (from d in new[] { 64, 128 }
         from causal in new[] { false, true }
         from n in new[] { 1024, 2048, 4096, 8192, 16384 }
         select PerformanceCase.Parse($"B{16384 / n} H{2048 / d} N{n} D{d}{(causal ? " causal" : "")}")).ToArray();

    /// <summary>
    /// Decode: one query per sequence against a KV cache of 1k-32k tokens, a GQA model of 32 query and 8 KV heads at
    /// D = 128 (Llama-3-8B's attention), one sequence and a batch of 16. These calls are bound by reading K and V.
    /// </summary>
    public static IReadOnlyList<PerformanceCase> DecodePreset { get; } =
        (from b in new[] { 1, 16 }
         from lk in new[] { 1024, 4096, 16384, 32768 }
         select PerformanceCase.Parse($"B{b} H32 Hkv8 Lq1 Lk{lk} D128")).ToArray();

    public override int Execute(CommandContext context, CudaSettings settings, CancellationToken cancellationToken)
    {
        var backend = CudaBackend.Default;
        if (backend.UnavailableReason is { } reason)
        {
            AnsiConsole.MarkupLine($"[red]The CUDA backend is not available:[/] {Markup.Escape(reason)}");
            return 2;
        }
        var cases = settings.Shapes.ToLowerInvariant() switch
        {
            "preset" => Preset,
            "decode" => DecodePreset,
            _ => PerformanceCase.ParseList(settings.Shapes),
        };
        using var device = CudaDevice.Open(0);
        var rows = new List<Row>();
        foreach (var type in settings.TypeList)
        {
            cancellationToken.ThrowIfCancellationRequested();
            rows.AddRange(type switch
            {
                "f16" => CudaTiming.TimeAll<Half>(backend, device, cases, "f16", settings.Seconds, settings.Backward, cancellationToken),
                "bf16" => CudaTiming.TimeAll<BFloat16>(backend, device, cases, "bf16", settings.Seconds, settings.Backward, cancellationToken),
                _ => CudaTiming.TimeAll<float>(backend, device, cases, "f32", settings.Seconds, settings.Backward, cancellationToken),
            });
        }

        string name = device.Name, architecture = device.Architecture;
        if (settings.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new { command = "cuda", pass = settings.Backward ? "backward" : "forward", device = name, architecture, rows },
                new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase }));
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]bench cuda[/]: {Markup.Escape(name)} ({architecture}), {(settings.Backward ? "backward" : "forward")} kernel time on device tensors");
        var table = new Table().AddColumns("case", "dtype", "ms", "TFLOP/s", "K/V GB/s", "launches timed");
        foreach (var r in rows)
            table.AddRow(Markup.Escape(r.Case), r.Dtype, r.Milliseconds.ToString("F3"), r.Tflops.ToString("F1"),
                r.KvGigabytesPerSecond.ToString("F0"), r.Launches.ToString());
        AnsiConsole.Write(table);
        return 0;
    }
}
