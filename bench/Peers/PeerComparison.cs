using AttentionEngine.Bench.Performance;

namespace AttentionEngine.Bench.Peers;

/// <summary>One case through our CPU backend and ONNX Runtime's CPU Attention operator, back to back in one process.</summary>
internal static class PeerComparison
{
    public const string PeerName = "OnnxRuntime";

    /// <summary>Our row, then the peer's (with the largest difference between the two outputs).</summary>
    public static IEnumerable<TimedResult> Compare(PerformanceCase c, CpuBackend ours, int threads, double seconds, MachineLimits limits)
    {
        using var tensors = CaseTensors<float>.Create(c);
        using var theirOutput = NativeTensor<float>.Zeros(c.Batch, c.Heads, c.QueryLength, c.HeadDim);
        using var peer = new OnnxAttentionPeer(c, tensors, theirOutput, threads);
        var mask = c.Causal ? Mask.Causal() : null;
        double ourSeconds = Timing.MedianSeconds(
            () => ours.Forward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output, new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = threads }),
            seconds);
        double theirSeconds = Timing.MedianSeconds(peer.Run, seconds);
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
}
