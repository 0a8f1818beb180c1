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

        var inputs = new[] { Region(q, nameof(q)), Region(k, nameof(k)), Region(v, nameof(v)), Region(output, nameof(output)),
            Region(lse, nameof(lse)), Region(dOutput, nameof(dOutput)) };
        var gradients = new[] { Region(dQ, nameof(dQ)), Region(dK, nameof(dK)), Region(dV, nameof(dV)) };
        for (int g = 0; g < gradients.Length; g++)
        {
            foreach (var input in inputs) gradients[g].ThrowIfOverlaps(input);
            for (int other = 0; other < g; other++) gradients[g].ThrowIfOverlaps(gradients[other]);
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

    private static DeviceRegion Region<TElement>(DeviceTensor<TElement> tensor, string name) where TElement : unmanaged =>
        new(tensor.Address, ElementSet.Of(tensor.Lengths, tensor.Strides, System.Runtime.CompilerServices.Unsafe.SizeOf<TElement>()), name);

    /// <summary>A device tensor's elements as bytes from its address, for the exact overlap test.</summary>
    private readonly record struct DeviceRegion(ulong Address, ElementSet Elements, string Name)
    {
        public void ThrowIfOverlaps(DeviceRegion other)
        {
            if (Elements.Intersects(other.Elements, (long)(other.Address - Address)))
                throw new ArgumentException(
                    $"{Name} overlaps the memory of {other.Name}: some element of {Name} shares memory with an element of {other.Name}. " +
                    "Gradients must not share memory with inputs or with other gradients, because the kernels read while they write.", Name);
        }
    }
}
