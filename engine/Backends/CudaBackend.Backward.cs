using System.Runtime.InteropServices;
using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine;

/// <summary>
/// The backward pass on the GPU (kernels/Cuda/flash_backward.cu): FlashAttention-2's recomputation from the saved
/// LSE on tensor cores, dK/dV per block of keys summed over the GQA group, dQ in a second kernel (no atomics, so the
/// gradients are bitwise reproducible), the bias gradient summed over its broadcast dimensions on the host in a fixed
/// order. Every mask kind, dropout (the forward's mask, bit for bit), Lq ≠ Lk, Dv ≠ D; host spans in and out.
/// </summary>
public sealed partial class CudaBackend
{
    /// <inheritdoc/>
    public override bool SupportsBackward => true;

    /// <inheritdoc/>
    protected internal override void ExecuteBackward<T, TMask, TScore>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
    {
        if (typeof(TScore) != typeof(IdentityScore))
            throw new NotSupportedException($"Backend {Name} runs block masks but not score functors ({typeof(TScore).Name}): C# functors cannot run in CUDA C++. Use the IlGpu or Cpu backend.");
        if (typeof(T) == typeof(float)) RunBackward<T, TMask, float>(call, blockMask, CudaElement.F32);
        else RunBackward<T, TMask, ushort>(call, blockMask, CudaElements.Of<T>());
    }

    private unsafe void RunBackward<T, TMask, TStorage>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask, CudaElement element)
        where T : unmanaged where TMask : struct, IMaskMod where TStorage : unmanaged
    {
        var (device, kernels) = Opened();
        var forward = call.Forward;
        var shape = forward.Shape;
        if (BackwardLimit(shape, call.ReturnBiasGradient) is { } limit) throw new NotSupportedException($"{shape}: {limit}.");
        float[] savedLse = HostPacking.Dense<float, float>(call.Lse); // dense [B, Hq, Lq]
        float[]? rowNorms = RecomputeCoarseRows(call, blockMask, savedLse);
        var variant = CudaBackwardVariant.For(Math.Max(shape.HeadDim, shape.ValueDim), element, kernels.SharedLimit);
        int dn = variant.HeadDim, bytes = variant.ElementBytes;
        long rows = (long)shape.Batch * shape.QueryHeads * shape.QueryLength, keyRows = (long)shape.Batch * shape.KvHeads * shape.KeyLength;

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            device.MakeCurrent();
            using var scratch = new DeviceScratch();
            // Host spans travel packed: dense rows of exactly the kernel's D, zero-padded (zero columns add nothing to
            // any score, dot product or Delta).
            var q = scratch.Upload<TStorage>(HostPacking.Dense<T, TStorage>(forward.Q, dn));
            var k = scratch.Upload<TStorage>(HostPacking.Dense<T, TStorage>(forward.K, dn));
            var v = scratch.Upload<TStorage>(HostPacking.Dense<T, TStorage>(forward.V, dn));
            var o = scratch.Upload<TStorage>(HostPacking.Dense<T, TStorage>(call.Output, dn));
            var dO = scratch.Upload<TStorage>(HostPacking.Dense<T, TStorage>(call.DOutput, dn));
            var lse = scratch.Upload<float>(savedLse);
            var norms = rowNorms is null ? null : scratch.Upload<float>(rowNorms);
            var dq = scratch.Allocate(rows * dn * bytes);
            var dk = scratch.Allocate(keyRows * dn * bytes);
            var dv = scratch.Allocate(keyRows * dn * bytes);
            var delta = scratch.Allocate(rows * sizeof(float));
            // The dQ kernel writes dS where a row sees the pair; pairs it skips keep these zeros.
            var dBias = call.ReturnBiasGradient ? scratch.Upload<float>(new float[rows * shape.KeyLength]) : null;

            var f = BaseParams(shape, forward.Band, forward.Scale, forward.Dropout);
            (f.Q, f.QStrides) = (q.Address, Dense(shape.QueryHeads, shape.QueryLength, dn));
            (f.K, f.KStrides) = (k.Address, Dense(shape.KvHeads, shape.KeyLength, dn));
            (f.V, f.VStrides) = (v.Address, Dense(shape.KvHeads, shape.KeyLength, dn));
            (f.O, f.OStrides) = (o.Address, Dense(shape.QueryHeads, shape.QueryLength, dn));
            (f.Lse, f.LseStrides) = (lse.Address, Dense(shape.QueryHeads, shape.QueryLength, 1));
            AttachMasks(ref f, shape, forward.Bias, forward.KeepMask, blockMask, scratch);
            var p = new BackwardParams
            {
                Forward = f,
                DOutput = dO.Address, DQ = dq.Address, DK = dk.Address, DV = dv.Address, Delta = delta.Address, DBias = dBias?.Address ?? 0,
                DOutputStrides = Dense(shape.QueryHeads, shape.QueryLength, dn), DQStrides = Dense(shape.QueryHeads, shape.QueryLength, dn),
                DKStrides = Dense(shape.KvHeads, shape.KeyLength, dn), DVStrides = Dense(shape.KvHeads, shape.KeyLength, dn),
                RowNorm = norms?.Address ?? 0,
            };

            using var stream = CudaStream.Create();
            LaunchBackward(kernels.Backward(variant), variant, shape, p, stream);
            stream.Synchronize();

            Download<TStorage, T>(dq, rows * dn, call.DQ, dn);
            Download<TStorage, T>(dk, keyRows * dn, call.DK, dn);
            Download<TStorage, T>(dv, keyRows * dn, call.DV, dn);
            if (dBias is not null) SumBiasGradient(shape, call.DBias, dBias);
        }
    }

    /// <summary>
    /// Host spans: rows whose saved LSE cannot normalise P (<see cref="IsCoarseLse"/>: a finite padding bias on every key
    /// of a row) get their softmax max and sum recomputed from the scores on the CPU, as the CPU backward does: the max
    /// replaces the row's entry of <paramref name="lse"/> (dense [B, Hq, Lq]) and the returned factors (1 / sum there, 1
    /// elsewhere) scale every P of the row in the kernels. Null when no row needs it (the kernels then read no
    /// factors). The rows are the ones device tensors refuse, so the two paths give the same bits wherever both run.
    /// </summary>
    private static float[]? RecomputeCoarseRows<T, TMask>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask, float[] lse)
        where T : unmanaged where TMask : struct, IMaskMod
    {
        if (!Array.Exists(lse, IsCoarseLse)) return null;
        float[] statistics = CpuBackend.CoarseRowStatistics(call, blockMask);
        var norms = new float[lse.Length];
        for (long row = 0; row < lse.LongLength; row++)
        {
            norms[row] = 1;
            if (!IsCoarseLse(lse[row])) continue;
            lse[row] = statistics[2 * row];
            norms[row] = statistics[2 * row + 1];
        }
        return norms;
    }

    /// <summary>
    /// Device tensors: magnitude of a saved LSE from which the CUDA backward refuses the row. LSE = m + ln l is one float: from 2^24 on
    /// its spacing is at least 1, so a recomputed P = e^(s - LSE) can be off by a factor of e or more, and at the
    /// magnitudes of a finite padding bias on every key of a row (-1e9, -1e30, float.MinValue) the LSE is m itself and
    /// every P of the row is 1 instead of 1 / Lk: a wrong gradient, infinite where Half overflows. The CPU backward
    /// recomputes such rows' max and sum from the scores (from 1024 on, <see cref="Kernels.Cpu.Backward.LsePrecision"/>),
    /// and so does the CUDA backward on host spans (<see cref="RecomputeCoarseRows"/>); on device tensors it would need
    /// Q, K and the masks on the host, so the call stops before any kernel runs, naming the row. Below 2^24 (logits in
    /// the thousands, hostile values only) the kernels carry the LSE's rounding into P as the textbook formula does,
    /// within the tolerance rule.
    /// </summary>
    internal const float CoarseLseMagnitude = 1 << 24;

    /// <summary>Whether the CUDA backward refuses a row whose saved LSE is <paramref name="lse"/>.</summary>
    internal static bool IsCoarseLse(float lse) => float.IsFinite(lse) && Math.Abs(lse) >= CoarseLseMagnitude;

    /// <summary>Device tensors: refuses a call with a row whose saved LSE <see cref="IsCoarseLse"/>, naming the first.</summary>
    /// <param name="shape">The call's shape.</param>
    /// <param name="lse">The saved LSE, dense [B, Hq, Lq].</param>
    private static void ThrowIfCoarseLse(AttentionShape shape, float[] lse)
    {
        for (long row = 0; row < lse.LongLength; row++)
        {
            float value = lse[row];
            if (IsCoarseLse(value))
                throw new NotSupportedException(
                    $"lse[{row / shape.QueryLength / shape.QueryHeads}, {row / shape.QueryLength % shape.QueryHeads}, {row % shape.QueryLength}] = {value}: the CUDA backward cannot differentiate rows whose saved LSE has magnitude " +
                    $">= {CoarseLseMagnitude} (a finite padding bias such as -1e30 on every key of the row " +
                    "leaves P unnormalisable from the LSE) on device tensors. Mask such keys with -infinity or a keep-mask, or call with host spans or the Cpu backend, which recompute these rows.");
        }
    }

    /// <summary>Why the backward's grids or host copies cannot cover the call; null when they can.</summary>
    private static string? BackwardLimit(AttentionShape shape, bool biasGradient)
    {
        long keyBlocks = (shape.KeyLength + (long)CudaBackwardVariant.RowsPerBlock - 1) / CudaBackwardVariant.RowsPerBlock;
        long deltaBlocks = ((long)shape.Batch * shape.QueryHeads * shape.QueryLength + CudaBackwardVariant.DeltaRowsPerBlock - 1) / CudaBackwardVariant.DeltaRowsPerBlock;
        if (keyBlocks > 65535 || deltaBlocks > int.MaxValue)
            return $"the CUDA backward's grids cover Lk ≤ {65535 * CudaBackwardVariant.RowsPerBlock} and batch·heads·Lq ≤ {(long)int.MaxValue * CudaBackwardVariant.DeltaRowsPerBlock} (the call has {shape.KeyLength} and {(long)shape.Batch * shape.QueryHeads * shape.QueryLength})";
        long scores = (long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.KeyLength;
        if (biasGradient && scores > Array.MaxLength)
            return $"the bias gradient is gathered from {scores} per-pair gradients, more than one array holds ({Array.MaxLength}); use the Cpu backend";
        return null;
    }

    private static unsafe void LaunchBackward((CudaFunction Delta, CudaFunction KeyValue, CudaFunction Query) kernels, CudaBackwardVariant variant,
        AttentionShape shape, BackwardParams p, CudaStream stream)
    {
        void* argument = &p;
        long rows = (long)shape.Batch * shape.QueryHeads * shape.QueryLength;
        const uint threads = CudaBackwardVariant.ThreadsPerBlock;
        int block = CudaBackwardVariant.RowsPerBlock;
        kernels.Delta.Launch(((uint)((rows + CudaBackwardVariant.DeltaRowsPerBlock - 1) / CudaBackwardVariant.DeltaRowsPerBlock), 1, 1), (threads, 1, 1), 0, stream, &argument);
        kernels.KeyValue.Launch(((uint)(shape.Batch * shape.KvHeads), (uint)((shape.KeyLength + block - 1) / block), 1), (threads, 1, 1),
            (uint)variant.SharedBytes, stream, &argument);
        kernels.Query.Launch(((uint)(shape.Batch * shape.QueryHeads), (uint)((shape.QueryLength + block - 1) / block), 1), (threads, 1, 1),
            (uint)variant.SharedBytes, stream, &argument);
    }

    private static void Download<TStorage, T>(DeviceMemory memory, long elements, scoped in Kernels.Tensors.Strided4<T> destination, int rowWidth)
        where TStorage : unmanaged where T : unmanaged
    {
        var host = new TStorage[elements];
        memory.CopyTo(MemoryMarshal.AsBytes(host.AsSpan()));
        HostPacking.Scatter<TStorage, T>(host, destination, rowWidth);
    }

    /// <summary>Downloads the per-pair gradients and sums them into dBias (<see cref="BiasGradientSum"/>: the Cpu backend's order).</summary>
    private static unsafe void SumBiasGradient(AttentionShape shape, scoped in Kernels.Tensors.Strided4<float> destination, DeviceMemory scores)
    {
        var host = new float[(long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.KeyLength];
        scores.CopyTo(MemoryMarshal.AsBytes(host.AsSpan()));
        fixed (float* target = &destination.Base)
        fixed (float* source = host)
            BiasGradientSum.Into(new Kernels.Tensors.RawStrided4<float>(target, destination), source);
    }
}
