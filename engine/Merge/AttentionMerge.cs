using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// Combines attention computed over disjoint sets of keys into the attention over their union, from each part's output
/// and log-sum-exp (<see cref="AttentionOptions.Lse"/>): split-KV across callers, context parallelism across machines,
/// a paged or tiered KV cache computed piece by piece. For every row, with M = max_s lse_s and w_s = exp(lse_s − M):
/// output = Σ_s w_s · output_s / Σ_s w_s and lse = M + log Σ_s w_s, in float64.
/// </summary>
/// <remarks>
/// A part whose LSE is −infinity saw no key for that row: its output is not read (whatever it holds, NaN included,
/// changes nothing), and a row no part saw outputs zeros and LSE −infinity, as a fully masked row does. The merge
/// is exact up to the rounding of the parts' outputs in their storage type and one final rounding, and the same bits
/// for any split of the work that gives the same parts in the same order. Rows are merged on the calling thread
/// (the work is O(parts × rows × Dv), far below the attention that made the parts).
/// </remarks>
public static class AttentionMerge
{
    /// <summary>Merges stacked parts into <paramref name="output"/> (and <paramref name="lse"/> when given).</summary>
    /// <param name="partialOutputs">the parts' outputs, [parts, batch, heads, Lq, Dv], any strides</param>
    /// <param name="partialLse">the parts' LSEs, [parts, batch, heads, Lq]</param>
    /// <param name="output">destination [batch, heads, Lq, Dv]; must not overlap the parts</param>
    /// <param name="lse">optional destination [batch, heads, Lq] for the merged LSE; default (rank 0) for none</param>
    /// <exception cref="ArgumentException">a shape, rank or overlap is wrong; the message names the tensor, dimension and values.</exception>
    public static void Merge<T>(ReadOnlyTensorSpan<T> partialOutputs, ReadOnlyTensorSpan<float> partialLse, TensorSpan<T> output,
        TensorSpan<float> lse = default) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        var shape = AttentionValidator.ValidateMerge(partialOutputs, partialLse, output, lse);
        var outputs = partialOutputs.Strides;
        var lses = partialLse.Strides;
        var destination = new Strided4<T>(ref output.GetPinnableReference(), [shape.Batch, shape.Heads, shape.Rows, shape.ValueDim], output.Strides);
        var lseDestination = lse.Rank == 0 ? default
            : new Strided4<float>(ref lse.GetPinnableReference(), [shape.Batch, shape.Heads, shape.Rows, 1], [lse.Strides[0], lse.Strides[1], lse.Strides[2], 0]);
        Span<double> accumulator = shape.ValueDim <= 512 ? stackalloc double[shape.ValueDim] : new double[shape.ValueDim];
        ref readonly T parts = ref partialOutputs.GetPinnableReference();
        ref readonly float partLses = ref partialLse.GetPinnableReference();
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.Heads; h++)
        for (int i = 0; i < shape.Rows; i++)
        {
            nint outputRow = b * outputs[1] + h * outputs[2] + i * outputs[3];
            nint lseRow = b * lses[1] + h * lses[2] + i * lses[3];
            var row = new MergeRow(accumulator);
            for (int s = 0; s < shape.Parts; s++)
            {
                float partLse = Unsafe.Add(ref Unsafe.AsRef(in partLses), s * lses[0] + lseRow);
                row.Add(partLse, in Unsafe.Add(ref Unsafe.AsRef(in parts), s * outputs[0] + outputRow), outputs[4]);
            }
            float merged = row.Finish(ref destination[b, h, i, 0], destination.Stride3);
            if (!lseDestination.IsEmpty) lseDestination[b, h, i, 0] = merged;
        }
    }

    /// <summary>
    /// Merges one more part into a running result in place: (<paramref name="output"/>, <paramref name="lse"/>) becomes
    /// the attention over the keys of both, as in ring attention, where each step's part is folded into the running
    /// state. Start from output = 0 and lse = −infinity (nothing seen yet) or from a first part.
    /// </summary>
    /// <param name="output">running output [batch, heads, Lq, Dv], read and overwritten</param>
    /// <param name="lse">running LSE [batch, heads, Lq], read and overwritten</param>
    /// <param name="partOutput">the new part's output [batch, heads, Lq, Dv]; must not overlap output or lse</param>
    /// <param name="partLse">the new part's LSE [batch, heads, Lq]</param>
    /// <exception cref="ArgumentException">a shape, rank or overlap is wrong; the message names the tensor, dimension and values.</exception>
    public static void MergeInto<T>(TensorSpan<T> output, TensorSpan<float> lse, ReadOnlyTensorSpan<T> partOutput, ReadOnlyTensorSpan<float> partLse)
        where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        var shape = AttentionValidator.ValidateMergeInto(output, lse, partOutput, partLse);
        var running = new Strided4<T>(ref output.GetPinnableReference(), [shape.Batch, shape.Heads, shape.Rows, shape.ValueDim], output.Strides);
        var runningLse = new Strided4<float>(ref lse.GetPinnableReference(), [shape.Batch, shape.Heads, shape.Rows, 1], [lse.Strides[0], lse.Strides[1], lse.Strides[2], 0]);
        var part = new ReadOnlyStrided4<T>(in partOutput.GetPinnableReference(), [shape.Batch, shape.Heads, shape.Rows, shape.ValueDim], partOutput.Strides);
        var partLseView = new ReadOnlyStrided4<float>(in partLse.GetPinnableReference(), [shape.Batch, shape.Heads, shape.Rows, 1], [partLse.Strides[0], partLse.Strides[1], partLse.Strides[2], 0]);
        Span<double> accumulator = shape.ValueDim <= 512 ? stackalloc double[shape.ValueDim] : new double[shape.ValueDim];
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.Heads; h++)
        for (int i = 0; i < shape.Rows; i++)
        {
            var row = new MergeRow(accumulator);
            row.Add(runningLse[b, h, i, 0], in running[b, h, i, 0], running.Stride3);
            row.Add(partLseView[b, h, i, 0], in part[b, h, i, 0], part.Stride3);
            runningLse[b, h, i, 0] = row.Finish(ref running[b, h, i, 0], running.Stride3);
        }
    }
}
