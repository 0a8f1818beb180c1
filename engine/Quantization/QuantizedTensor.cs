using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// An int8 tensor [batch, heads, tokens, dim] with one symmetric float scale per token row, in native memory it owns:
/// the storage of an int8 KV cache (a quarter of fp32's bytes, half of bf16's). Element [b, h, t, c] stands for
/// <c>Values[b, h, t, c] · Scales[b, h, t]</c>. <see cref="Write{T}"/> quantises new tokens as they arrive
/// (quantise-on-append); <see cref="Tokens"/> views the first tokens for a call.
/// </summary>
/// <remarks>
/// Each row is quantised on its own: scale = max|x| / 127 and value = x / scale rounded to the nearest integer (ties to
/// even), so |x − value · scale| ≤ scale / 2 for every element. A row of zeros gets scale 0.
/// </remarks>
public sealed class QuantizedTensor : IDisposable
{
    /// <summary>
    /// Largest scale a call accepts: 127 · scale must stay finite in float, so every dequantised element is a finite
    /// number (the kernels rely on K and V being finite here; rows quantised from floats never come near it).
    /// </summary>
    public const float MaxScale = float.MaxValue / 128;

    private QuantizedTensor(NativeTensor<sbyte> values, NativeTensor<float> scales)
    {
        Values = values;
        Scales = scales;
    }

    /// <summary>The int8 values, [batch, heads, tokens, dim], contiguous.</summary>
    public NativeTensor<sbyte> Values { get; }

    /// <summary>The per-row scales, [batch, heads, tokens], contiguous.</summary>
    public NativeTensor<float> Scales { get; }

    /// <summary>Token capacity (dimension 2).</summary>
    public int Capacity => (int)Values.Lengths[2];

    /// <summary>A zeroed tensor (values 0, scales 0) of the given lengths.</summary>
    /// <exception cref="ArgumentOutOfRangeException">a length is below 1.</exception>
    public static QuantizedTensor Zeros(int batch, int heads, int tokens, int dim)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(heads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(dim, 1);
        var values = NativeTensor<sbyte>.Zeros(batch, heads, tokens, dim);
        try { return new(values, NativeTensor<float>.Zeros(batch, heads, tokens)); }
        catch { values.Dispose(); throw; }
    }

    /// <summary>Quantises a whole [batch, heads, tokens, dim] tensor of float, Half or BFloat16.</summary>
    /// <exception cref="ArgumentException"><paramref name="source"/> is not rank 4, or holds NaN or ±infinity (named with its index).</exception>
    public static QuantizedTensor Quantize<T>(ReadOnlyTensorSpan<T> source) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        if (source.Rank != 4)
            throw new ArgumentException($"source has rank {source.Rank}; expected rank 4 [batch, heads, tokens, dim].", nameof(source));
        var l = source.Lengths;
        var quantized = Zeros((int)l[0], (int)l[1], (int)l[2], (int)l[3]);
        try
        {
            quantized.Write(source, 0);
            return quantized;
        }
        catch
        {
            quantized.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Quantises <paramref name="source"/> [batch, heads, n, dim] into tokens [firstToken, firstToken + n): how a cache
    /// appends new keys or values. Nothing is written unless the whole source fits and is finite.
    /// </summary>
    /// <exception cref="ArgumentException">the source's lengths do not match, it holds NaN or ±infinity, or the tokens do not fit.</exception>
    public void Write<T>(ReadOnlyTensorSpan<T> source, int firstToken) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        ObjectDisposedException.ThrowIf(Values.IsDisposed, this);
        Int8Quantizer.ThrowIfCannotWrite(source, Values.Lengths, firstToken);
        Int8Quantizer.Write(source, Values, Scales, firstToken);
    }

    /// <summary>The first <paramref name="count"/> tokens, for a call (a cache filled up to <paramref name="count"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is below 1 or above <see cref="Capacity"/>.</exception>
    public QuantizedTensorSpan Tokens(int count)
    {
        ObjectDisposedException.ThrowIf(Values.IsDisposed, this);
        if (count < 1 || count > Capacity)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"count is {count}; expected 1 to the capacity {Capacity}.");
        var l = Values.Lengths;
        nint[] valueLengths = [l[0], l[1], count, l[3]];
        nint[] scaleLengths = [l[0], l[1], count];
        return new(
            TensorLayout.ReadOnlyView<sbyte>(Values.Storage, valueLengths, Values.Strides),
            TensorLayout.ReadOnlyView<float>(Scales.Storage, scaleLengths, Scales.Strides));
    }

    /// <summary>All tokens.</summary>
    public QuantizedTensorSpan AsSpan() => Tokens(Capacity);

    /// <summary>The view of all tokens.</summary>
    public static implicit operator QuantizedTensorSpan(QuantizedTensor tensor) => tensor.AsSpan();

    /// <summary>Frees the native memory.</summary>
    public void Dispose()
    {
        Values.Dispose();
        Scales.Dispose();
    }
}
