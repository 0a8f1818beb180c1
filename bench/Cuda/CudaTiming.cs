using AttentionEngine.Bench.Performance;
using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine.Bench.Cuda;

/// <summary>
/// Times the CUDA backend's forward on device tensors with CUDA events. One set of buffers, sized for the largest
/// case and filled once with N(0, 1) values, serves every case through views (the preset's cases all hold 16k tokens).
/// </summary>
internal static class CudaTiming
{
    public static List<CudaCommand.Row> TimeAll<T>(CudaBackend backend, CudaDevice device, IReadOnlyList<PerformanceCase> cases, string dtype,
        double seconds, CancellationToken cancellationToken) where T : unmanaged
    {
        long queries = cases.Max(c => (long)c.Batch * c.Heads * c.QueryLength * c.HeadDim);
        long keys = cases.Max(c => (long)c.Batch * c.KvHeads * c.KeyLength * c.HeadDim);
        using var q = Filled<T>(device, queries, seed: 1);
        using var k = Filled<T>(device, keys, seed: 2);
        using var v = Filled<T>(device, keys, seed: 3);
        using var o = DeviceTensor<T>.Zeros(device, (nint)queries);
        using var stream = CudaStream.Create();
        using var start = CudaEvent.Create();
        using var end = CudaEvent.Create();

        var rows = new List<CudaCommand.Row>();
        foreach (var c in cases)
        {
            cancellationToken.ThrowIfCancellationRequested();
            nint[] qLengths = [c.Batch, c.Heads, c.QueryLength, c.HeadDim], kLengths = [c.Batch, c.KvHeads, c.KeyLength, c.HeadDim];
            using var qc = View(q, qLengths);
            using var kc = View(k, kLengths);
            using var vc = View(v, kLengths);
            using var oc = View(o, qLengths);
            var mask = c.Causal ? Mask.Causal() : null;

            float Batch(int launches)
            {
                start.Record(stream);
                for (int n = 0; n < launches; n++) backend.Forward(qc, kc, vc, oc, new AttentionOptions { Mask = mask }, null, stream);
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
            rows.Add(new CudaCommand.Row(c.Name, dtype, ms, c.Flops / (ms * 1e-3) / 1e12,
                c.KvBytes(System.Runtime.CompilerServices.Unsafe.SizeOf<T>()) / (ms * 1e-3) / 1e9, launches));
        }
        return rows;
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
