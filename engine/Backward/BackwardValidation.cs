using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

public static partial class AttentionValidator
{
    /// <summary>
    /// Checks a backward call: the forward part exactly as <see cref="Validate{T}"/> does (output as the saved
    /// output), LSE as [batch, queryHeads, Lq], dOutput shaped like output, dQ/dK/dV shaped like q/k/v, and no gradient
    /// destination sharing memory with an input or with another destination.
    /// </summary>
    public static AttentionBackwardCall<T> ValidateBackward<T>(
        scoped in ReadOnlyTensorSpan<T> q, scoped in ReadOnlyTensorSpan<T> k, scoped in ReadOnlyTensorSpan<T> v,
        scoped in ReadOnlyTensorSpan<T> output, scoped in ReadOnlyTensorSpan<float> lse, scoped in ReadOnlyTensorSpan<T> dOutput,
        scoped in TensorSpan<T> dQ, scoped in TensorSpan<T> dK, scoped in TensorSpan<T> dV, scoped in AttentionOptions options,
        scoped in TensorSpan<float> dBias = default)
        where T : unmanaged
    {
        if (options.ReturnWeights || options.ReturnLse)
            throw new ArgumentException("options.Lse and options.Weights are forward destinations; the backward pass takes the saved LSE as its lse argument.", nameof(options));
        // The saved output is read, never written: it is validated as the forward's output through a writable alias.
        var outputAlias = new TensorSpan<T>(
            MemoryMarshal.CreateSpan(ref Unsafe.AsRef(in output.GetPinnableReference()), (int)TensorLayout.StorageLength(output.Lengths, output.Strides)),
            output.Lengths, output.Strides);
        var forward = Validate(q, k, v, outputAlias, options);
        var shape = forward.Shape;

        Span<int> lseShape = [shape.Batch, shape.QueryHeads, shape.QueryLength];
        if (lse.Rank != 3 || lse.Lengths[0] != lseShape[0] || lse.Lengths[1] != lseShape[1] || lse.Lengths[2] != lseShape[2])
            throw new ArgumentException(
                $"lse has lengths [{Join(lse.Lengths)}]; expected [batch, queryHeads, Lq] = [{Join(lseShape)}] (the forward's LSE).", nameof(lse));
        ExpectSameLengths(dOutput.Lengths, output.Lengths, "dOutput", "output");
        ExpectSameLengths(dQ.Lengths, q.Lengths, "dQ", "q");
        ExpectSameLengths(dK.Lengths, k.Lengths, "dK", "k");
        ExpectSameLengths(dV.Lengths, v.Lengths, "dV", "v");
        CheckNonOverlapping(dQ.Lengths, dQ.Strides, "dQ");
        CheckNonOverlapping(dK.Lengths, dK.Strides, "dK");
        CheckNonOverlapping(dV.Lengths, dV.Strides, "dV");

        var dqRegion = MemoryRegion.Of(dQ, "dQ");
        var dkRegion = MemoryRegion.Of(dK, "dK");
        var dvRegion = MemoryRegion.Of(dV, "dV");
        ThrowIfGradientOverlaps(dqRegion, "dQ", q, k, v, output, lse, dOutput, options);
        ThrowIfGradientOverlaps(dkRegion, "dK", q, k, v, output, lse, dOutput, options);
        ThrowIfGradientOverlaps(dvRegion, "dV", q, k, v, output, lse, dOutput, options);
        dkRegion.ThrowIfOverlaps(dqRegion, "dK");
        dvRegion.ThrowIfOverlaps(dqRegion, "dV");
        dvRegion.ThrowIfOverlaps(dkRegion, "dV");

        var biasGradient = default(Strided4<float>);
        bool broadcasts = false;
        if (!dBias.IsEmpty)
        {
            if (options.Bias.IsEmpty)
                throw new ArgumentException("dBias is given but the call has no options.Bias to differentiate.", nameof(dBias));
            ExpectSameLengths(dBias.Lengths, options.Bias.Lengths, "dBias", "options.Bias");
            CheckNonOverlapping(dBias.Lengths, dBias.Strides, "dBias");
            var region = MemoryRegion.Of(dBias, "dBias");
            ThrowIfGradientOverlaps(region, "dBias", q, k, v, output, lse, dOutput, options);
            region.ThrowIfOverlaps(dqRegion, "dBias");
            region.ThrowIfOverlaps(dkRegion, "dBias");
            region.ThrowIfOverlaps(dvRegion, "dBias");
            Span<int> scoreShape = [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength];
            var view = BroadcastMask((ReadOnlyTensorSpan<float>)dBias, scoreShape, "dBias");
            biasGradient = new Strided4<float>(ref dBias.GetPinnableReference(), scoreShape,
                [view.Stride0, view.Stride1, view.Stride2, view.Stride3]);
            for (int d = 0; d < 4; d++)
                broadcasts |= scoreShape[d] > 1 && (d switch { 0 => view.Stride0, 1 => view.Stride1, 2 => view.Stride2, _ => view.Stride3 }) == 0;
        }

        var l = lse.Strides;
        return new AttentionBackwardCall<T>(forward,
            View(output), new ReadOnlyStrided4<float>(in lse.GetPinnableReference(), [lseShape[0], lseShape[1], lseShape[2], 1], [l[0], l[1], l[2], 0]),
            View(dOutput), Writable(dQ), Writable(dK), Writable(dV), biasGradient, broadcasts);
    }

    private static void ThrowIfGradientOverlaps<T>(MemoryRegion written, string name,
        scoped in ReadOnlyTensorSpan<T> q, scoped in ReadOnlyTensorSpan<T> k, scoped in ReadOnlyTensorSpan<T> v,
        scoped in ReadOnlyTensorSpan<T> output, scoped in ReadOnlyTensorSpan<float> lse, scoped in ReadOnlyTensorSpan<T> dOutput,
        scoped in AttentionOptions options)
    {
        ThrowIfOverlapsAnyInput(written, name, q, k, v, options);
        written.ThrowIfOverlaps(MemoryRegion.Of(output, "output"), name);
        written.ThrowIfOverlaps(MemoryRegion.Of(lse, "lse"), name);
        written.ThrowIfOverlaps(MemoryRegion.Of(dOutput, "dOutput"), name);
    }

    private static void ExpectSameLengths(ReadOnlySpan<nint> actual, ReadOnlySpan<nint> expected, string name, string like)
    {
        if (actual.SequenceEqual(expected)) return;
        throw new ArgumentException($"{name} has lengths [{Join(actual)}]; expected [{Join(expected)}], the lengths of {like}.", name);
    }

    private static Strided4<T> Writable<T>(scoped in TensorSpan<T> tensor)
    {
        var l = tensor.Lengths;
        return new Strided4<T>(ref tensor.GetPinnableReference(), [(int)l[0], (int)l[1], (int)l[2], (int)l[3]], tensor.Strides);
    }
}
