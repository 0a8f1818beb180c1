using AttentionEngine.Bench.Performance;
using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine.Bench.Cuda;

/// <summary>
/// Times the CUDA backend's forward or backward on device tensors with CUDA events. One set of buffers, sized for the
/// largest case and filled once with N(0, 1) values, serves every case through views (the preset's cases all hold 16k
/// tokens). The backward's saved output and LSE come from one forward of the case, so its probabilities are real ones.
/// </summary>
internal static class CudaTiming
{
    /// <summary>FlashAttention's FLOP count for the backward: 2.5 times the forward's (five matrix products to its two).</summary>
    public const double BackwardFlopsRatio = 2.5;

    public static List<CudaCommand.Row> TimeAll<T>(CudaBackend backend, CudaDevice device, IReadOnlyList<PerformanceCase> cases, string dtype,
        double seconds, bool backward, CancellationToken cancellationToken) where T : unmanaged
    {
        long queries = cases.Max(c => (long)c.Batch * c.Heads * c.QueryLength * c.HeadDim);
        long keys = cases.Max(c => (long)c.Batch * c.KvHeads * c.KeyLength * c.HeadDim);
        long rows = cases.Max(c => (long)c.Batch * c.Heads * c.QueryLength);
        using var q = Filled<T>(device, queries, seed: 1);
        using var k = Filled<T>(device, keys, seed: 2);
        using var v = Filled<T>(device, keys, seed: 3);
        using var o = DeviceTensor<T>.Zeros(device, (nint)queries);
        // The backward's own buffers: LSE, dO, dQ, dK, dV (one element each when timing the forward).
        using var lse = DeviceTensor<float>.Zeros(device, (nint)(backward ? rows : 1));
        using var dO = backward ? Filled<T>(device, queries, seed: 4) : DeviceTensor<T>.Zeros(device, 1);
        using var dq = DeviceTensor<T>.Zeros(device, (nint)(backward ? queries : 1));
        using var dk = DeviceTensor<T>.Zeros(device, (nint)(backward ? keys : 1));
        using var dv = DeviceTensor<T>.Zeros(device, (nint)(backward ? keys : 1));
        using var stream = CudaStream.Create();
        using var start = CudaEvent.Create();
        using var end = CudaEvent.Create();

        var results = new List<CudaCommand.Row>();
        foreach (var c in cases)
        {
            cancellationToken.ThrowIfCancellationRequested();
            nint[] qLengths = [c.Batch, c.Heads, c.QueryLength, c.HeadDim], kLengths = [c.Batch, c.KvHeads, c.KeyLength, c.HeadDim];
            using var qc = View(q, qLengths);
            using var kc = View(k, kLengths);
            using var vc = View(v, kLengths);
            using var oc = View(o, qLengths);
            var mask = c.Causal ? Mask.Causal() : null;
            using var lc = backward ? View(lse, [c.Batch, c.Heads, c.QueryLength]) : null;
            using var dOc = backward ? View(dO, qLengths) : null;
            using var dqc = backward ? View(dq, qLengths) : null;
            using var dkc = backward ? View(dk, kLengths) : null;
            using var dvc = backward ? View(dv, kLengths) : null;
            if (backward) backend.Forward(qc, kc, vc, oc, new AttentionOptions { Mask = mask }, lc, stream);

            void Run()
            {
                if (backward) backend.Backward(qc, kc, vc, oc, lc!, dOc!, dqc!, dkc!, dvc!, new AttentionOptions { Mask = mask }, default, stream);
                else backend.Forward(qc, kc, vc, oc, new AttentionOptions { Mask = mask }, null, stream);
            }

            float Batch(int launches)
            {
                start.Record(stream);
                for (int n = 0; n < launches; n++) Run();
                end.Record(stream);
                end.Synchronize();
                return end.MillisecondsSince(start);
            }

            Batch(3); // module load and first-launch costs
            float once = Math.Max(Batch(1), 1e-3f);
            int launches = (int)Math.Clamp(Math.Ceiling(seconds * 1000 / 3 / once), 3, 10_000);
            var trials = new[] { Batch(launches), Batch(launches), Batch(launches) };
            Array.Sort(trials);
            double ms = trials[1] / launches;
            double flops = c.Flops * (backward ? BackwardFlopsRatio : 1);
            results.Add(new CudaCommand.Row(c.Name, dtype, ms, flops / (ms * 1e-3) / 1e12,
                c.KvBytes(System.Runtime.CompilerServices.Unsafe.SizeOf<T>()) / (ms * 1e-3) / 1e9, launches));
        }
        return results;
    }

    private static DeviceTensor<T> View<T>(DeviceTensor<T> buffer, nint[] lengths) where T : unmanaged =>
        DeviceTensor<T>.FromAddress(buffer.Device, buffer.Address, lengths, TensorLayout.Contiguous(lengths));

    /// <summary>
    /// A device buffer of N(0, 1) values: one seeded block of up to 2^24 drawn on the host, copied over the buffer
    /// piece by piece. Drawing a decode cache's 2^29 values one by one took minutes on the host; repeating a block of
    /// 32-64 MB changes nothing the kernels can see (each reads its own addresses, and the block exceeds the L2).
    /// </summary>
    private static DeviceTensor<T> Filled<T>(CudaDevice device, long count, int seed) where T : unmanaged
    {
        const long Block = 1 << 24;
        using var host = TensorRandom.Create<T>(seed, ValueDistribution.Normal, (nint)Math.Min(count, Block));
        var buffer = DeviceTensor<T>.Zeros(device, (nint)count);
        long elementBytes = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        for (long start = 0; start < count; start += Block)
        {
            nint length = (nint)Math.Min(Block, count - start);
            using var piece = DeviceTensor<T>.FromAddress(device, buffer.Address + (ulong)(start * elementBytes), [length], [1]);
            piece.CopyFrom(host.AsReadOnlyTensorSpan().Slice([new System.Buffers.NRange(0, length)]));
        }
        return buffer;
    }
}
