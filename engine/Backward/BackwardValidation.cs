using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

internal static partial class AttentionValidator
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
        // The forward's own options are welcome: its LSE and weights destinations are not the backward's business (the
        // saved LSE is the lse argument), so they are left out rather than refused.
        ThrowIfInt8Scores(options);
        var forwardOptions = options with { Lse = default, Weights = default };
        // The saved output is read, never written: it is validated as the forward's output through a writable alias.
        var outputAlias = new TensorSpan<T>(
            MemoryMarshal.CreateSpan(ref Unsafe.AsRef(in output.GetPinnableReference()), (int)Math.Min(int.MaxValue, TensorLayout.StorageLength(output.Lengths, output.Strides))),
            output.Lengths, output.Strides);
        var forward = Validate(q, k, v, outputAlias, forwardOptions);
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

        var biasGradient = BiasGradientView(dBias, options, shape, out bool broadcasts);
        if (!biasGradient.IsEmpty)
        {
            var region = MemoryRegion.Of(dBias, "dBias");
            ThrowIfGradientOverlaps(region, "dBias", q, k, v, output, lse, dOutput, options);
            region.ThrowIfOverlaps(dqRegion, "dBias");
            region.ThrowIfOverlaps(dkRegion, "dBias");
            region.ThrowIfOverlaps(dvRegion, "dBias");
        }

        var l = lse.Strides;
        return new AttentionBackwardCall<T>(forward,
            View(output), new ReadOnlyStrided4<float>(in lse.GetPinnableReference(), [lseShape[0], lseShape[1], lseShape[2], 1], [l[0], l[1], l[2], 0]),
            View(dOutput), Writable(dQ), Writable(dK), Writable(dV), biasGradient, broadcasts);
    }

    private static void ThrowIfInt8Scores(scoped in AttentionOptions options)
    {
        if (options.ScorePrecision == ScorePrecision.Int8)
            throw new NotSupportedException(
                "options.ScorePrecision is Int8: int8 scores are for inference; the backward pass computes scores in float, which would not " +
                "match that forward's probabilities. Train with ScorePrecision.Float.");
    }

    /// <summary>
    /// The bias-gradient destination as a [B, Hq, Lq, Lk] view (stride 0 where the bias broadcasts), empty when none is
    /// given; <paramref name="broadcasts"/> tells whether several scores share an element. Overlaps are the caller's check.
    /// </summary>
    private static Strided4<float> BiasGradientView(scoped in TensorSpan<float> dBias, scoped in AttentionOptions options, AttentionShape shape,
        out bool broadcasts)
    {
        broadcasts = false;
        if (dBias.Rank == 0) return default;
        if (options.Bias.Rank == 0)
            throw new ArgumentException("dBias is given but the call has no options.Bias to differentiate.", nameof(dBias));
        ExpectSameBroadcast(dBias.Lengths, options.Bias.Lengths, [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength]);
        CheckNonOverlapping(dBias.Lengths, dBias.Strides, "dBias");
        Span<int> scoreShape = [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength];
        var view = BroadcastMask((ReadOnlyTensorSpan<float>)dBias, scoreShape, "dBias");
        for (int d = 0; d < 4; d++)
            broadcasts |= scoreShape[d] > 1 && (d switch { 0 => view.Stride0, 1 => view.Stride1, 2 => view.Stride2, _ => view.Stride3 }) == 0;
        return new Strided4<float>(ref dBias.GetPinnableReference(), scoreShape, [view.Stride0, view.Stride1, view.Stride2, view.Stride3]);
    }

    private static void ThrowIfGradientOverlaps<T>(MemoryRegion written, string name,
        scoped in ReadOnlyTensorSpan<T> q, scoped in ReadOnlyTensorSpan<T> k, scoped in ReadOnlyTensorSpan<T> v,
        scoped in ReadOnlyTensorSpan<T> output, scoped in ReadOnlyTensorSpan<float> lse, scoped in ReadOnlyTensorSpan<T> dOutput,
        scoped in AttentionOptions options)
    {
        ThrowIfOverlapsAnyInput(written, name, new InputRegions(MemoryRegion.Of(q, "q"), MemoryRegion.Of(k, "k"), MemoryRegion.Of(v, "v"), default, default), options);
        written.ThrowIfOverlaps(MemoryRegion.Of(output, "output"), name);
        written.ThrowIfOverlaps(MemoryRegion.Of(lse, "lse"), name);
        written.ThrowIfOverlaps(MemoryRegion.Of(dOutput, "dOutput"), name);
    }

    /// <summary>
    /// dBias must broadcast over exactly the dimensions the bias broadcasts over: any rank, as long as right-aligned
    /// against [B, Hq, Lq, Lk] each dimension is full where the bias's is and 1 where the bias's is (leading 1s may be
    /// added or dropped: a [Lq, Lk] bias takes a [1, 1, Lq, Lk] gradient).
    /// </summary>
    private static void ExpectSameBroadcast(ReadOnlySpan<nint> dBias, ReadOnlySpan<nint> bias, ReadOnlySpan<int> scoreShape)
    {
        static nint At(ReadOnlySpan<nint> lengths, int d) => d - (4 - lengths.Length) is var n && n >= 0 ? lengths[n] : 1;
        bool same = dBias.Length <= 4;
        for (int d = 0; d < 4 && same; d++) same = At(dBias, d) == At(bias, d);
        if (same) return;
        var expected = new nint[4];
        for (int d = 0; d < 4; d++) expected[d] = At(bias, d);
        throw new ArgumentException(
            $"dBias has lengths [{Join(dBias)}]; expected the broadcast of options.Bias (lengths [{Join(bias)}]) against " +
            $"[batch, heads, Lq, Lk] = [{string.Join(", ", scoreShape.ToArray())}], that is [{Join(expected)}] with any leading 1s added or dropped.", "dBias");
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
