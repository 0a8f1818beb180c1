using AttentionEngine.Bench.Performance;
using AttentionEngine.Kernels.Cpu.Threading;
using Spectre.Console;

namespace AttentionEngine.Bench.Peers;

/// <summary>
/// Cases through our CPU backend and ONNX Runtime's CPU Attention operator, call by call in turn in one process: what
/// `bench peers` and `bench run --grid` share (the timing loop, its progress bar and the table).
/// </summary>
internal static class PeerComparison
{
    public const string PeerName = "OnnxRuntime";

    /// <summary>Every case, ours then the peer's row; a progress bar unless the output is JSON.</summary>
    public static List<TimedResult> CompareAll(IReadOnlyList<PerformanceCase> cases, CpuBackend ours, int threads, double seconds,
        MachineLimits limits, bool json, string label, CancellationToken cancellationToken)
    {
        var rows = new List<TimedResult>();
        void RunAll(Action<PerformanceCase>? progress)
        {
            foreach (var c in cases)
            {
                cancellationToken.ThrowIfCancellationRequested();
                progress?.Invoke(c);
                rows.AddRange(Compare(c, ours, threads, seconds, limits));
            }
        }
        if (json) RunAll(null); // standard output carries only the JSON document
        else
            AnsiConsole.Progress().AutoClear(true).HideCompleted(true).Start(p =>
            {
                var task = p.AddTask(label, maxValue: cases.Count);
                RunAll(c => { task.Description = c.Name; task.Increment(1); });
            });
        return rows;
    }

    /// <summary>Our row, then the peer's (with the largest difference between the two outputs).</summary>
    public static IEnumerable<TimedResult> Compare(PerformanceCase c, CpuBackend ours, int threads, double seconds, MachineLimits limits)
    {
        using var tensors = CaseTensors<float>.Create(c);
        using var theirOutput = NativeTensor<float>.Zeros(c.Batch, c.Heads, c.QueryLength, c.HeadDim);
        using var peer = new OnnxAttentionPeer(c, tensors, theirOutput, threads);
        var mask = c.Causal ? Mask.Causal() : null;
        // Ours and the peer call by call in turn (as `bench gemm` and `bench layer` time them), so the machine's drift
        // falls on both alike; the peer's workers stop spinning when its Run returns (OrtTensors.Options), and ours
        // when our call returns.
        using var fair = CpuWorkerPool.StopIdleSpin();
        double[] medians = Timing.MedianSecondsInterleaved([
            () => ours.Forward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output, new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = threads }),
            peer.Run], seconds);
        double ourSeconds = medians[0], theirSeconds = medians[1];
        double difference = 0;
        var a = tensors.Output.Storage;
        var b = theirOutput.Storage;
        for (int n = 0; n < a.Length; n++) difference = Math.Max(difference, Math.Abs((double)a[n] - b[n]));
        return
        [
            TimedResult.Of(ours.Name, c, "f32", ourSeconds, limits, sizeof(float)),
            TimedResult.Of(PeerName, c, "f32", theirSeconds, limits, sizeof(float)) with { MaxDifference = difference },
        ];
    }

    /// <summary>The console table of (ours, peer) row pairs: times, rates, the ratio and the largest difference.</summary>
    public static Table Table(IReadOnlyList<TimedResult> rows)
    {
        var table = new Table().AddColumns("case", "ours ms", "ours rate", "ORT ms", "ORT rate", "ours faster by", "max |diff|");
        foreach (var pair in rows.Chunk(2))
        {
            var (us, them) = (pair[0], pair[1]);
            table.AddRow(us.Case, us.Milliseconds.ToString("F3"), $"{us.Rate:F1} {us.Unit}", them.Milliseconds.ToString("F3"),
                $"{them.Rate:F1} {them.Unit}", $"{them.Milliseconds / us.Milliseconds:F2}x", $"{them.MaxDifference:E1}");
        }
        return table;
    }
}
