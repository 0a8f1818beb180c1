using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static AttentionEngine.Kernels.Cpu.Simd.Exp2Polynomial;

namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>Portable 128-bit (SSE, NEON, or emulated) float vectors (4 lanes).</summary>
internal readonly unsafe struct Vector128Ops : IVectorOps<Vector128<float>>
{
    public static int Count => Vector128<float>.Count;
    public static bool IsHardwareAccelerated => Vector128.IsHardwareAccelerated;
    public static Vector128<float> Zero => Vector128<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Broadcast(float value) => Vector128.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load(float* source) => Vector128.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadBFloat16(ushort* source) => Vector128.ShiftLeft(Vector128.WidenLower(Vector64.Load(source).ToVector128Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadHalf(ushort* source) => HalfWidening.Widen(Vector128.WidenLower(Vector64.Load((short*)source).ToVector128Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadScaledHalf(ushort* source) => HalfWidening.WidenScaled(Vector128.WidenLower(Vector64.Load((short*)source).ToVector128Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadScaledFiniteHalf(ushort* source) => HalfWidening.WidenScaledFinite(Vector128.WidenLower(Vector64.Load((short*)source).ToVector128Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> LoadInt8(sbyte* source) =>
        Vector128.ConvertToSingle(Sse41.IsSupported
            ? Sse41.ConvertToVector128Int32(source)
            : Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalar(Unsafe.ReadUnaligned<int>(source)).AsSByte())));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector128<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Add(Vector128<float> left, Vector128<float> right) => left + right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Subtract(Vector128<float> left, Vector128<float> right) => left - right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Multiply(Vector128<float> left, Vector128<float> right) => left * right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) =>
        Vector128.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector128<float> value)
    {
        if (!Sse3.IsSupported) return Vector128.Sum(value);
        var pairs = Sse3.HorizontalAdd(value, value);
        return Sse3.HorizontalAdd(pairs, pairs).ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SumFour(Vector128<float> a, Vector128<float> b, Vector128<float> c, Vector128<float> d) =>
        Sse3.IsSupported
            ? Sse3.HorizontalAdd(Sse3.HorizontalAdd(a, b), Sse3.HorizontalAdd(c, d))
            : Vector128.Create(Sum(a), Sum(b), Sum(c), Sum(d));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Max(Vector128<float> left, Vector128<float> right) => Vector128.Max(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MaxNative(Vector128<float> left, Vector128<float> right) => Vector128.MaxNative(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Saturate(Vector128<float> value)
    {
        // x86 min/max return their second operand when either is NaN: with the bound first, NaN passes through.
        if (Sse.IsSupported)
            return Sse.Max(Vector128.Create(-float.MaxValue), Sse.Min(Vector128.Create(float.MaxValue), value));
        return Vector128.Max(Vector128.Create(-float.MaxValue), Vector128.Min(Vector128.Create(float.MaxValue), value));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ReplaceNegativeInfinity(Vector128<float> value, Vector128<float> replacement) =>
        Vector128.ConditionalSelect(Vector128.Equals(value, Vector128.Create(float.NegativeInfinity)), replacement, value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Abs(Vector128<float> value) => Vector128.Abs(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MaxMagnitudeNative(Vector128<float> left, Vector128<float> right) => Vector128.MaxNative(Vector128.Abs(left), Vector128.Abs(right));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> NegativeInfinityMask(Vector128<float> value) => Vector128.Equals(value, Vector128.Create(float.NegativeInfinity));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Or(Vector128<float> left, Vector128<float> right) => left | right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnySet(Vector128<float> mask) => Vector128.ExtractMostSignificantBits(mask) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAddPairs(Vector128<float> accumulator, Vector128<float> pairs, int* keyPair)
    {
        Vector128<int> products;
        if (Sse2.IsSupported) products = Sse2.MultiplyAddAdjacent(pairs.AsInt16(), Vector128.Create(*keyPair).AsInt16());
        else products = PortablePairProducts(pairs.AsInt32(), Vector128.Create(*keyPair));
        return (accumulator.AsInt32() + products).AsSingle();
    }

    /// <summary>What vpmaddwd computes, in portable operations: lo·lo + hi·hi of sign-extended int16 halves.</summary>
    internal static Vector128<int> PortablePairProducts(Vector128<int> x, Vector128<int> k) =>
        Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(x, 16), 16) * Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(k, 16), 16)
        + Vector128.ShiftRightArithmetic(x, 16) * Vector128.ShiftRightArithmetic(k, 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ConvertInt32ToSingle(Vector128<float> bits) => Vector128.ConvertToSingle(bits.AsInt32());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> QuantizePairs(Vector128<float> even, Vector128<float> odd, Vector128<float> inverse)
    {
        Vector128<float> low = Vector128.Create(-127f), high = Vector128.Create(127f);
        Vector128<int> e = Vector128.ConvertToInt32(Vector128.Min(Vector128.Max(Vector128.Round(even * inverse), low), high));
        Vector128<int> o = Vector128.ConvertToInt32(Vector128.Min(Vector128.Max(Vector128.Round(odd * inverse), low), high));
        return ((e & Vector128.Create(0xFFFF)) | Vector128.ShiftLeft(o, 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp2(Vector128<float> x)
    {
        x = Vector128.Max(x, Vector128.Create(MinExponent));
        var n = Vector128.Round(x);
        var f = x - n;
        var p = Vector128.FusedMultiplyAdd(Vector128.Create(C6), f, Vector128.Create(C5));
        p = Vector128.FusedMultiplyAdd(p, f, Vector128.Create(C4));
        p = Vector128.FusedMultiplyAdd(p, f, Vector128.Create(C3));
        p = Vector128.FusedMultiplyAdd(p, f, Vector128.Create(C2));
        p = Vector128.FusedMultiplyAdd(p, f, Vector128.Create(C1));
        p = Vector128.FusedMultiplyAdd(p, f, Vector128<float>.One);
        // 2^n from the exponent field: n + 127 in [0, 127]; a field of 0 is the value 0 (flushes x <= -127 to 0).
        // n is integral and in range, so the native truncating conversion is exact; the saturating ConvertToInt32 cost four
        // more instructions per vector, and NaN gives 1.0 as the scale either way (p is NaN).
        var scale = Vector128.ShiftLeft(Vector128.ConvertToInt32Native(n) + Vector128.Create(127), 23).AsSingle();
        return p * scale;
    }
}
