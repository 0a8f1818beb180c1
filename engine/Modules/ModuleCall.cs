using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using AttentionEngine.Kernels;

namespace AttentionEngine;

/// <summary>The checks and small passes of a layer call around its GEMMs and attention.</summary>
internal static unsafe class ModuleCall
{
    internal readonly record struct Shape(int Batch, int QueryLength, int KeyLength);

    /// <summary>Throws unless the inputs, output and option tensors fit the layer; returns the call's sizes.</summary>
    public static Shape Validate<T, TOut>(scoped in ReadOnlyTensorSpan<T> query, scoped in ReadOnlyTensorSpan<T> key, scoped in ReadOnlyTensorSpan<T> value,
        scoped in TensorSpan<TOut> output, scoped in MultiHeadAttentionOptions options, MultiHeadAttentionConfig config, bool self)
    {
        string queryName = self ? "input" : "query";
        RequireSequences(query.Rank, query.Lengths, config.EmbedDim, queryName, "EmbedDim");
        nint batch = query.Lengths[0], lq = query.Lengths[1];
        if (!self)
        {
            RequireSequences(key.Rank, key.Lengths, config.KeyInputDim, "key", "KeyDim");
            RequireSequences(value.Rank, value.Lengths, config.ValueInputDim, "value", "ValueDim");
            if (key.Lengths[0] != batch) throw new ArgumentException($"key has batch {key.Lengths[0]}; expected {batch} to match query.", "key");
            if (value.Lengths[0] != batch || value.Lengths[1] != key.Lengths[1])
                throw new ArgumentException($"value is [{string.Join(", ", value.Lengths.ToArray())}]; expected [{batch}, {key.Lengths[1]}, {config.ValueInputDim}] to match key.", "value");
        }
        nint lk = self ? lq : key.Lengths[1];
        if (output.Rank != 3 || output.Lengths[0] != batch || output.Lengths[1] != lq || output.Lengths[2] != config.EmbedDim)
            throw new ArgumentException($"output is [{string.Join(", ", output.Lengths.ToArray())}]; expected [{batch}, {lq}, {config.EmbedDim}].", "output");
        if (options.KeyPadding.Rank != 0 && (options.KeyPadding.Rank != 2 || options.KeyPadding.Lengths[0] != batch || options.KeyPadding.Lengths[1] != lk))
            throw new ArgumentException($"options.KeyPadding is [{string.Join(", ", options.KeyPadding.Lengths.ToArray())}]; expected [{batch}, {lk}] (batch, keys).", "options.KeyPadding");
        if (options.AverageWeights.Rank != 0 && (options.AverageWeights.Rank != 3 || options.AverageWeights.Lengths[0] != batch
            || options.AverageWeights.Lengths[1] != lq || options.AverageWeights.Lengths[2] != lk))
            throw new ArgumentException($"options.AverageWeights is [{string.Join(", ", options.AverageWeights.Lengths.ToArray())}]; expected [{batch}, {lq}, {lk}].", "options.AverageWeights");
        if (options.PositionOffset < 0 || options.KeyPositionOffset < 0)
            throw new ArgumentException($"Rotary position offsets are {options.PositionOffset} (queries) and {options.KeyPositionOffset} (keys); they must not be negative.", "options.PositionOffset");
        if (options.MaxDegreeOfParallelism is < 1)
            throw new ArgumentException($"options.MaxDegreeOfParallelism is {options.MaxDegreeOfParallelism}; expected at least 1 (or null).", "options.MaxDegreeOfParallelism");
        // Scratch for one call: refuse sizes whose float count would not fit a 64-bit size (the GEMM takes int dimensions).
        long tokens = checked((long)batch * Math.Max(lq, lk));
        if (batch > int.MaxValue || lq > int.MaxValue || lk > int.MaxValue || tokens > int.MaxValue)
            throw new ArgumentException($"batch x length is {tokens} tokens; at most {int.MaxValue} per call.", queryName);
        return new Shape((int)batch, (int)lq, (int)lk);
    }

    private static void RequireSequences(int rank, ReadOnlySpan<nint> lengths, int width, string name, string widthName)
    {
        if (rank != 3) throw new ArgumentException($"{name} has rank {rank}; expected [batch, sequence, {widthName}].", name);
        if (lengths[2] != width) throw new ArgumentException($"{name} dimension 2 is {lengths[2]}; expected {widthName} = {width}.", name);
    }

    /// <summary>keep[b, j] = !padding[b, j]: the keep-mask attention takes.</summary>
    public static void InvertPadding(scoped in ReadOnlyTensorSpan<bool> padding, bool* keep, int batch, int keys)
    {
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < keys; j++)
                keep[(long)b * keys + j] = !padding[b, j];
    }

    /// <summary>average[b, i, j] = mean over heads of weights[b, h, i, j], summed in float64 in head order.</summary>
    public static void AverageHeads(scoped in TensorSpan<float> weights, scoped in TensorSpan<float> average)
    {
        nint batch = weights.Lengths[0], heads = weights.Lengths[1], rows = weights.Lengths[2], keys = weights.Lengths[3];
        Span<nint> index = stackalloc nint[4];
        for (nint b = 0; b < batch; b++)
            for (nint i = 0; i < rows; i++)
                for (nint j = 0; j < keys; j++)
                {
                    double sum = 0;
                    for (nint h = 0; h < heads; h++)
                    {
                        index[0] = b; index[1] = h; index[2] = i; index[3] = j;
                        sum += weights[index];
                    }
                    index[0] = b; index[1] = i; index[2] = j;
                    average[index[..3]] = (float)(sum / heads);
                }
    }

    /// <summary>A [batch, length, width] tensor (any strides) as dense float rows [batch·length, width].</summary>
    public static void CopyTokens<T>(scoped in ReadOnlyTensorSpan<T> tokens, float* destination, int width) where T : unmanaged
    {
        nint batch = tokens.Lengths[0], length = tokens.Lengths[1];
        nint s0 = tokens.Strides[0], s1 = tokens.Strides[1], s2 = tokens.Strides[2];
        ref T origin = ref System.Runtime.CompilerServices.Unsafe.AsRef(in tokens.GetPinnableReference());
        for (nint b = 0; b < batch; b++)
            for (nint t = 0; t < length; t++)
                for (int c = 0; c < width; c++)
                    destination[(b * length + t) * width + c] = ElementTypes.ToSingle(System.Runtime.CompilerServices.Unsafe.Add(ref origin, b * s0 + t * s1 + c * s2));
    }

    /// <summary>Dense float rows [batch·length, width] into a [batch, length, width] tensor (any strides), rounded to its type.</summary>
    public static void WriteTokens<T>(float* source, scoped in TensorSpan<T> tokens, int width) where T : unmanaged
    {
        nint batch = tokens.Lengths[0], length = tokens.Lengths[1];
        nint s0 = tokens.Strides[0], s1 = tokens.Strides[1], s2 = tokens.Strides[2];
        ref T origin = ref tokens.GetPinnableReference();
        for (nint b = 0; b < batch; b++)
            for (nint t = 0; t < length; t++)
                for (int c = 0; c < width; c++)
                    System.Runtime.CompilerServices.Unsafe.Add(ref origin, b * s0 + t * s1 + c * s2) = ElementTypes.FromSingle<T>(source[(b * length + t) * width + c]);
    }

    /// <summary>destination[c] = Σ over rows of rows[r · stride + c], summed in float64 in row order (rows read in turn, not columns).</summary>
    /// <remarks>
    /// Sixteen columns at a time, widened to two vectors of doubles: each column still gets the same additions in the same
    /// order, so the bits are the scalar loop's. Element by element the bias gradients were 3% of a layer's backward.
    /// </remarks>
    public static void ColumnSums(float* rows, long count, int columns, nint stride, Span<float> destination)
    {
        double[] rented = System.Buffers.ArrayPool<double>.Shared.Rent(columns);
        try
        {
            fixed (double* sums = rented)
            {
                new Span<double>(sums, columns).Clear();
                int vectorColumns = Vector512.IsHardwareAccelerated ? columns & ~15 : 0;
                for (long r = 0; r < count; r++)
                {
                    float* row = rows + r * stride;
                    for (int c = 0; c < vectorColumns; c += 16)
                    {
                        var (lower, upper) = Vector512.Widen(Vector512.Load(row + c));
                        Vector512.Store(Vector512.Load(sums + c) + lower, sums + c);
                        Vector512.Store(Vector512.Load(sums + c + 8) + upper, sums + c + 8);
                    }
                    for (int c = vectorColumns; c < columns; c++) sums[c] += row[c];
                }
                for (int c = 0; c < columns; c++) destination[c] = (float)sums[c];
            }
        }
        finally
        {
            System.Buffers.ArrayPool<double>.Shared.Return(rented);
        }
    }
}
