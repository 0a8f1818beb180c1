using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// A view of an int8 tensor with one float scale per row of its last dimension: element [b, h, t, c] stands for
/// <c>Values[b, h, t, c] · Scales[b, h, t]</c>. What an int8 KV cache hands to <c>Attention.Forward</c>: values
/// [batch, kvHeads, tokens, headDim] and scales [batch, kvHeads, tokens], each with any strides (a cache with spare
/// capacity is a view of its first tokens). Make one from a <see cref="QuantizedTensor"/>, or from memory you own.
/// </summary>
public readonly ref struct QuantizedTensorSpan
{
    /// <summary>A view of int8 <paramref name="values"/> and their per-row <paramref name="scales"/> (checked by the call that reads them).</summary>
    public QuantizedTensorSpan(ReadOnlyTensorSpan<sbyte> values, ReadOnlyTensorSpan<float> scales)
    {
        Values = values;
        Scales = scales;
    }

    /// <summary>The int8 values, [batch, heads, tokens, dim].</summary>
    public ReadOnlyTensorSpan<sbyte> Values { get; }

    /// <summary>One scale per row, [batch, heads, tokens]: finite, at least 0 and at most <see cref="QuantizedTensor.MaxScale"/>.</summary>
    public ReadOnlyTensorSpan<float> Scales { get; }
}
