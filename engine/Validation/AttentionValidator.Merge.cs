using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>The shape of an LSE merge: parts, then [batch, heads, rows, Dv] of the merged result.</summary>
internal readonly record struct MergeShape(int Parts, int Batch, int Heads, int Rows, int ValueDim);

internal static partial class AttentionValidator
{
    private static readonly string[] MergeDims = ["parts", "batch", "heads", "Lq", "Dv"];

    /// <summary>Checks <see cref="AttentionMerge.Merge{T}"/>'s tensors; every message names the tensor, dimension and values.</summary>
    internal static MergeShape ValidateMerge<T>(scoped in ReadOnlyTensorSpan<T> partialOutputs, scoped in ReadOnlyTensorSpan<float> partialLse,
        scoped in TensorSpan<T> output, scoped in TensorSpan<float> lse)
    {
        Span<int> parts = stackalloc int[5];
        CheckMergeLengths(partialOutputs.Lengths, MergeDims, "partialOutputs", parts);
        var shape = new MergeShape(parts[0], parts[1], parts[2], parts[3], parts[4]);
        ExpectMergeLengths(partialLse.Lengths, [shape.Parts, shape.Batch, shape.Heads, shape.Rows], MergeDims.AsSpan(0, 4), "partialLse", "partialOutputs");
        ExpectMergeLengths(output.Lengths, [shape.Batch, shape.Heads, shape.Rows, shape.ValueDim], MergeDims.AsSpan(1), "output", "partialOutputs");
        CheckNonOverlapping(output.Lengths, output.Strides, "output");
        var outputRegion = MemoryRegion.Of(output, "output");
        outputRegion.ThrowIfOverlaps(MemoryRegion.Of(partialOutputs, "partialOutputs"), "output");
        outputRegion.ThrowIfOverlaps(MemoryRegion.Of(partialLse, "partialLse"), "output");
        if (lse.Rank != 0) // only the default span means "no LSE wanted"
        {
            ExpectMergeLengths(lse.Lengths, [shape.Batch, shape.Heads, shape.Rows], MergeDims.AsSpan(1, 3), "lse", "partialOutputs");
            CheckNonOverlapping(lse.Lengths, lse.Strides, "lse");
            var lseRegion = MemoryRegion.Of(lse, "lse");
            lseRegion.ThrowIfOverlaps(MemoryRegion.Of(partialOutputs, "partialOutputs"), "lse");
            lseRegion.ThrowIfOverlaps(MemoryRegion.Of(partialLse, "partialLse"), "lse");
            lseRegion.ThrowIfOverlaps(outputRegion, "lse");
        }
        return shape;
    }

    /// <summary>Checks <see cref="AttentionMerge.MergeInto{T}"/>'s tensors.</summary>
    internal static MergeShape ValidateMergeInto<T>(scoped in TensorSpan<T> output, scoped in TensorSpan<float> lse,
        scoped in ReadOnlyTensorSpan<T> partOutput, scoped in ReadOnlyTensorSpan<float> partLse)
    {
        Span<int> lengths = stackalloc int[4];
        CheckMergeLengths(output.Lengths, MergeDims.AsSpan(1), "output", lengths);
        var shape = new MergeShape(1, lengths[0], lengths[1], lengths[2], lengths[3]);
        if (lse.Rank == 0) throw new ArgumentException("lse is required: it holds the running log-sum-exp that the merge reads and updates.", nameof(lse));
        ExpectMergeLengths(lse.Lengths, [shape.Batch, shape.Heads, shape.Rows], MergeDims.AsSpan(1, 3), "lse", "output");
        ExpectMergeLengths(partOutput.Lengths, [shape.Batch, shape.Heads, shape.Rows, shape.ValueDim], MergeDims.AsSpan(1), "partOutput", "output");
        ExpectMergeLengths(partLse.Lengths, [shape.Batch, shape.Heads, shape.Rows], MergeDims.AsSpan(1, 3), "partLse", "output");
        CheckNonOverlapping(output.Lengths, output.Strides, "output");
        CheckNonOverlapping(lse.Lengths, lse.Strides, "lse");
        var outputRegion = MemoryRegion.Of(output, "output");
        var lseRegion = MemoryRegion.Of(lse, "lse");
        lseRegion.ThrowIfOverlaps(outputRegion, "lse");
        outputRegion.ThrowIfOverlaps(MemoryRegion.Of(partOutput, "partOutput"), "output");
        outputRegion.ThrowIfOverlaps(MemoryRegion.Of(partLse, "partLse"), "output");
        lseRegion.ThrowIfOverlaps(MemoryRegion.Of(partOutput, "partOutput"), "lse");
        lseRegion.ThrowIfOverlaps(MemoryRegion.Of(partLse, "partLse"), "lse");
        return shape;
    }

    /// <summary>Rank and positive lengths (each within int) of the tensor that defines the shape.</summary>
    private static void CheckMergeLengths(ReadOnlySpan<nint> lengths, ReadOnlySpan<string> dims, string name, Span<int> result)
    {
        if (lengths.Length != dims.Length)
            throw new ArgumentException(
                $"{name} has rank {lengths.Length} with lengths [{Join(lengths)}]; expected rank {dims.Length} [{string.Join(", ", dims.ToArray())}].", name);
        for (int d = 0; d < dims.Length; d++)
        {
            if (lengths[d] < 1 || lengths[d] > int.MaxValue)
                throw new ArgumentException(
                    $"{name} dimension {d} ({dims[d]}) has length {lengths[d]}; every dimension must be between 1 and {int.MaxValue}.", name);
            result[d] = (int)lengths[d];
        }
    }

    private static void ExpectMergeLengths(ReadOnlySpan<nint> lengths, ReadOnlySpan<int> expected, ReadOnlySpan<string> dims, string name, string other)
    {
        if (lengths.Length != expected.Length)
            throw new ArgumentException(
                $"{name} has rank {lengths.Length} with lengths [{Join(lengths)}]; expected rank {expected.Length} " +
                $"[{string.Join(", ", dims.ToArray())}] = [{Join(expected)}] to match {other}.", name);
        for (int d = 0; d < expected.Length; d++)
            if (lengths[d] != expected[d])
                throw new ArgumentException(
                    $"{name} dimension {d} ({dims[d]}) is {lengths[d]}; expected {expected[d]} to match {other} " +
                    $"([{string.Join(", ", dims.ToArray())}] = [{Join(expected)}]).", name);
    }
}
