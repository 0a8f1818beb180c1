using System.Numerics.Tensors;

namespace AttentionEngine;

internal static partial class AttentionValidator
{
    /// <summary>
    /// Checks a backward call on device tensors: the forward part as <see cref="ValidateDevice{T}"/> does (output as the
    /// saved output), lse as [batch, queryHeads, Lq], dOutput shaped like output, dQ/dK/dV shaped like q/k/v, all on q's
    /// device, and no gradient sharing an element's memory with an input or another gradient (exactly, element by
    /// element: dQ/dK/dV as interleaved views of one packed buffer are fine). The host dBias must not overlap the host
    /// bias or keep-mask.
    /// </summary>
    public static DeviceBackwardCall<T> ValidateDeviceBackward<T>(
        DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output, DeviceTensor<float> lse, DeviceTensor<T> dOutput,
        DeviceTensor<T> dQ, DeviceTensor<T> dK, DeviceTensor<T> dV, scoped in AttentionOptions options, scoped in TensorSpan<float> dBias)
        where T : unmanaged
    {
        ThrowIfInt8Scores(options);
        // As on the host: the forward's LSE and weights destinations are not the backward's business.
        var forward = ValidateDevice(q, k, v, output, options with { Lse = default, Weights = default }, null);
        var shape = forward.Shape;
        int ordinal = q.Device.Ordinal;
        ArgumentNullException.ThrowIfNull(lse);
        ArgumentNullException.ThrowIfNull(dOutput);
        ArgumentNullException.ThrowIfNull(dQ);
        ArgumentNullException.ThrowIfNull(dK);
        ArgumentNullException.ThrowIfNull(dV);
        ThrowIfUnusable(lse, nameof(lse), ordinal);
        ThrowIfUnusable(dOutput, nameof(dOutput), ordinal);
        ThrowIfUnusable(dQ, nameof(dQ), ordinal);
        ThrowIfUnusable(dK, nameof(dK), ordinal);
        ThrowIfUnusable(dV, nameof(dV), ordinal);

        CheckLseLengths(lse.Lengths, shape, nameof(lse));
        ExpectSameLengths(dOutput.Lengths, output.Lengths, nameof(dOutput), nameof(output));
        ExpectSameLengths(dQ.Lengths, q.Lengths, nameof(dQ), nameof(q));
        ExpectSameLengths(dK.Lengths, k.Lengths, nameof(dK), nameof(k));
        ExpectSameLengths(dV.Lengths, v.Lengths, nameof(dV), nameof(v));
        CheckNonOverlapping(dQ.Lengths, dQ.Strides, nameof(dQ));
        CheckNonOverlapping(dK.Lengths, dK.Strides, nameof(dK));
        CheckNonOverlapping(dV.Lengths, dV.Strides, nameof(dV));

        // Element by element (Extent): dQ, dK and dV may interleave in one packed buffer.
        var inputs = new[] { (Extent(q), nameof(q)), (Extent(k), nameof(k)), (Extent(v), nameof(v)), (Extent(output), nameof(output)),
            (Extent(lse), nameof(lse)), (Extent(dOutput), nameof(dOutput)) };
        var gradients = new[] { (Extent(dQ), nameof(dQ)), (Extent(dK), nameof(dK)), (Extent(dV), nameof(dV)) };
        for (int g = 0; g < gradients.Length; g++)
        {
            var (memory, name) = gradients[g];
            foreach (var (input, inputName) in inputs) ThrowIfOverlaps(memory, name, input, inputName);
            for (int other = 0; other < g; other++) ThrowIfOverlaps(memory, name, gradients[other].Item1, gradients[other].Item2);
        }

        var biasGradient = BiasGradientView(dBias, options, shape, out _);
        if (!biasGradient.IsEmpty)
        {
            var region = MemoryRegion.Of(dBias, nameof(dBias));
            region.ThrowIfOverlaps(MemoryRegion.Of(options.Bias, "options.Bias"), nameof(dBias));
            region.ThrowIfOverlaps(MemoryRegion.Of(options.KeepMask, "options.KeepMask"), nameof(dBias));
        }
        return new DeviceBackwardCall<T>(forward, lse, dOutput, dQ, dK, dV, biasGradient);
    }
}
