using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace AttentionEngine.Kernels;

/// <summary>
/// Bulk conversions between storage types and float, vectorised: float copies, Half by <see cref="HalfWidening"/>,
/// BFloat16 by the 16-bit shift that makes it a float (rows are short, 64-256 elements: an inlined loop, no per-row
/// dispatch). Strided sources fall back to element loops.
/// </summary>
internal static unsafe class ElementConversion
{
    /// <summary>Widens <paramref name="count"/> elements, <paramref name="stride"/> apart, into contiguous floats.</summary>
    public static void ToSingle<T>(T* source, nint stride, int count, float* destination) where T : unmanaged
    {
        if (stride != 1)
        {
            for (int n = 0; n < count; n++) destination[n] = ElementTypes.ToSingle(source[n * stride]);
            return;
        }
        if (typeof(T) == typeof(float))
            Buffer.MemoryCopy(source, destination, (long)count * sizeof(float), (long)count * sizeof(float));
        else if (typeof(T) == typeof(Half))
            WidenHalf((ushort*)source, count, destination);
        else if (typeof(T) == typeof(BFloat16))
            WidenBFloat16((ushort*)source, count, destination);
        else
            ElementTypes.ThrowIfUnsupported<T>();
    }

    /// <summary>Rounds <paramref name="count"/> contiguous floats into elements <paramref name="stride"/> apart.</summary>
    public static void FromSingle<T>(float* source, int count, T* destination, nint stride) where T : unmanaged
    {
        if (stride == 1 && typeof(T) == typeof(float))
        {
            Buffer.MemoryCopy(source, destination, (long)count * sizeof(float), (long)count * sizeof(float));
            return;
        }
        if (stride == 1 && typeof(T) == typeof(Half))
        {
            TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(source, count), new Span<Half>(destination, count));
            return;
        }
        for (int n = 0; n < count; n++) destination[n * stride] = ElementTypes.FromSingle<T>(source[n]);
    }

    private static void WidenBFloat16(ushort* source, int count, float* destination)
    {
        int n = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; n <= count - Vector128<ushort>.Count; n += Vector128<ushort>.Count)
            {
                var bits = Vector256.WidenLower(Vector128.Load(source + n).ToVector256Unsafe());
                Vector256.ShiftLeft(bits, 16).AsSingle().Store(destination + n);
            }
        }
        for (; n < count; n++) destination[n] = BitConverter.Int32BitsToSingle(source[n] << 16);
    }

    private static void WidenHalf(ushort* source, int count, float* destination)
    {
        int n = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; n <= count - Vector128<ushort>.Count; n += Vector128<ushort>.Count)
                HalfWidening.Widen(Vector256.WidenLower(Vector128.Load((short*)source + n).ToVector256Unsafe())).Store(destination + n);
        }
        // The tail, and machines without 256-bit vectors: the same arithmetic one lane at a time (a scalar (float)Half
        // would quiet signalling NaNs, so two paths would disagree on NaN payloads).
        for (; n < count; n++) destination[n] = HalfWidening.Widen(Vector128.CreateScalar((int)(short)source[n])).ToScalar();
    }
}
