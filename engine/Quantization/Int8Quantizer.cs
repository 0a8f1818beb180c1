using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace AttentionEngine;

/// <summary>
/// Symmetric per-row int8 quantisation: scale = max|x| / 127, value = round(x / scale) (ties to even, so |value| ≤ 127
/// and |x − value · scale| ≤ scale / 2). The division is done in float64 so every element lands on its nearest integer.
/// </summary>
internal static unsafe class Int8Quantizer
{
    /// <summary>Largest magnitude a row may hold: its scale max/127 must not exceed <see cref="QuantizedTensor.MaxScale"/>.</summary>
    public const float Largest = 127 * QuantizedTensor.MaxScale;

    /// <summary>Checks that <paramref name="source"/> fits tokens [firstToken, firstToken + n) of a tensor of <paramref name="target"/> lengths and is finite.</summary>
    public static void ThrowIfCannotWrite<T>(scoped in ReadOnlyTensorSpan<T> source, ReadOnlySpan<nint> target, int firstToken) where T : unmanaged
    {
        if (source.Rank != 4)
            throw new ArgumentException($"source has rank {source.Rank}; expected rank 4 [batch, heads, tokens, dim].", nameof(source));
        var l = source.Lengths;
        string[] dims = ["batch", "heads", "tokens", "dim"];
        foreach (int d in (ReadOnlySpan<int>)[0, 1, 3])
            if (l[d] != target[d])
                throw new ArgumentException($"source dimension {d} ({dims[d]}) is {l[d]}; expected {target[d]} to match the quantized tensor.", nameof(source));
        if (firstToken < 0 || firstToken > target[2] - l[2])
            throw new ArgumentOutOfRangeException(nameof(firstToken), firstToken,
                $"tokens [{firstToken}, {firstToken + l[2]}) do not fit the capacity {target[2]}; nothing was written.");
        fixed (T* basePointer = &Unsafe.AsRef(in source.GetPinnableReference()))
        {
            var s = source.Strides;
            for (nint b = 0; b < l[0]; b++)
            for (nint h = 0; h < l[1]; h++)
            for (nint t = 0; t < l[2]; t++)
            for (nint c = 0; c < l[3]; c++)
            {
                float x = ElementTypes.ToSingle(basePointer[b * s[0] + h * s[1] + t * s[2] + c * s[3]]);
                if (!(Math.Abs(x) <= Largest))
                    throw new ArgumentException(
                        $"source[{b}, {h}, {t}, {c}] is {x}; int8 quantisation needs finite values of magnitude at most {Largest} " +
                        "(127 · MaxScale, so every dequantised element stays finite). Nothing was written.", nameof(source));
            }
        }
    }

    /// <summary>Quantises every row of a checked <paramref name="source"/> into tokens from <paramref name="firstToken"/>.</summary>
    public static void Write<T>(scoped in ReadOnlyTensorSpan<T> source, NativeTensor<sbyte> values, NativeTensor<float> scales, int firstToken)
        where T : unmanaged
    {
        var l = source.Lengths;
        var s = source.Strides;
        var vs = values.Strides;
        var ss = scales.Strides;
        int dim = (int)l[3];
        double* row = stackalloc double[Math.Min(dim, 1024)];
        double[]? large = dim > 1024 ? new double[dim] : null;
        fixed (T* basePointer = &Unsafe.AsRef(in source.GetPinnableReference()))
        fixed (double* largeRow = large)
        {
            double* x = large is null ? row : largeRow;
            for (nint b = 0; b < l[0]; b++)
            for (nint h = 0; h < l[1]; h++)
            for (nint t = 0; t < l[2]; t++)
            {
                T* sourceRow = basePointer + b * s[0] + h * s[1] + t * s[2];
                double max = 0;
                for (int c = 0; c < dim; c++)
                {
                    x[c] = ElementTypes.ToDouble(sourceRow[c * s[3]]);
                    max = Math.Max(max, Math.Abs(x[c]));
                }
                float scale = MathF.Min((float)(max / 127), QuantizedTensor.MaxScale);
                // The float scale may round below max/127: clamp so no value exceeds ±127.
                sbyte* target = values.Pointer + b * vs[0] + h * vs[1] + (firstToken + t) * vs[2];
                for (int c = 0; c < dim; c++)
                    target[c * vs[3]] = scale == 0 ? (sbyte)0 : (sbyte)Math.Clamp(Math.Round(x[c] / scale, MidpointRounding.ToEven), -127, 127);
                scales.Pointer[b * ss[0] + h * ss[1] + (firstToken + t) * ss[2]] = scale;
            }
        }
    }
}
