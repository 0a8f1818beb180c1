using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static AttentionEngine.Kernels.Cpu.Simd.Exp2Polynomial;

namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>AVX2/AVX (or emulated) float vectors (8 lanes).</summary>
internal readonly unsafe struct Vector256Ops : IVectorOps<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;
    public static bool IsHardwareAccelerated => Vector256.IsHardwareAccelerated;
    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Broadcast(float value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* source) => Vector256.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadBFloat16(ushort* source) => Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load(source).ToVector256Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadHalf(ushort* source) => HalfWidening.Widen(Vector256.WidenLower(Vector128.Load((short*)source).ToVector256Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadScaledHalf(ushort* source) => HalfWidening.WidenScaled(Vector256.WidenLower(Vector128.Load((short*)source).ToVector256Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadScaledFiniteHalf(ushort* source) => HalfWidening.WidenScaledFinite(Vector256.WidenLower(Vector128.Load((short*)source).ToVector256Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadInt8(sbyte* source) =>
        Vector256.ConvertToSingle(Avx2.IsSupported
            ? Avx2.ConvertToVector256Int32(source)
            : Vector256.WidenLower(Vector256.WidenLower(Vector128.CreateScalar(Unsafe.ReadUnaligned<long>(source)).AsSByte().ToVector256Unsafe())));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector256<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> left, Vector256<float> right) => left + right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Subtract(Vector256<float> left, Vector256<float> right) => left - right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Multiply(Vector256<float> left, Vector256<float> right) => left * right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Vector256.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> value)
    {
        if (!Avx.IsSupported) return Vector256.Sum(value);
        var pairs = Avx.HorizontalAdd(value, value);
        var quads = Avx.HorizontalAdd(pairs, pairs);
        return quads.GetElement(0) + quads.GetElement(4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SumFour(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        if (!Avx.IsSupported) return Vector128.Create(Sum(a), Sum(b), Sum(c), Sum(d));
        // [a 0-3, b 0-3, c 0-3, d 0-3 | the same of lanes 4-7], each ((x0 + x1) + (x2 + x3))
        var quads = Avx.HorizontalAdd(Avx.HorizontalAdd(a, b), Avx.HorizontalAdd(c, d));
        return quads.GetLower() + quads.GetUpper();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> left, Vector256<float> right) => Vector256.Max(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MaxNative(Vector256<float> left, Vector256<float> right) => Vector256.MaxNative(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Saturate(Vector256<float> value)
    {
        // x86 min/max return their second operand when either is NaN: with the bound first, NaN passes through.
        if (Avx.IsSupported)
            return Avx.Max(Vector256.Create(-float.MaxValue), Avx.Min(Vector256.Create(float.MaxValue), value));
        return Vector256.Max(Vector256.Create(-float.MaxValue), Vector256.Min(Vector256.Create(float.MaxValue), value));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ReplaceNegativeInfinity(Vector256<float> value, Vector256<float> replacement) =>
        Vector256.ConditionalSelect(Vector256.Equals(value, Vector256.Create(float.NegativeInfinity)), replacement, value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Abs(Vector256<float> value) => Vector256.Abs(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MaxMagnitudeNative(Vector256<float> left, Vector256<float> right) => Vector256.MaxNative(Vector256.Abs(left), Vector256.Abs(right));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> NegativeInfinityMask(Vector256<float> value) => Vector256.Equals(value, Vector256.Create(float.NegativeInfinity));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Or(Vector256<float> left, Vector256<float> right) => left | right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnySet(Vector256<float> mask) => Vector256.ExtractMostSignificantBits(mask) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAddPairs(Vector256<float> accumulator, Vector256<float> pairs, int* keyPair)
    {
        Vector256<int> products;
        if (Avx2.IsSupported) products = Avx2.MultiplyAddAdjacent(pairs.AsInt16(), Vector256.Create(*keyPair).AsInt16());
        else products = PortablePairProducts(pairs.AsInt32(), Vector256.Create(*keyPair));
        return (accumulator.AsInt32() + products).AsSingle();
    }

    /// <summary>What vpmaddwd computes, in portable operations: lo·lo + hi·hi of sign-extended int16 halves.</summary>
    internal static Vector256<int> PortablePairProducts(Vector256<int> x, Vector256<int> k) =>
        Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(x, 16), 16) * Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(k, 16), 16)
        + Vector256.ShiftRightArithmetic(x, 16) * Vector256.ShiftRightArithmetic(k, 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ConvertInt32ToSingle(Vector256<float> bits) => Vector256.ConvertToSingle(bits.AsInt32());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> QuantizePairs(Vector256<float> even, Vector256<float> odd, Vector256<float> inverse)
    {
        Vector256<float> low = Vector256.Create(-127f), high = Vector256.Create(127f);
        Vector256<int> e = Vector256.ConvertToInt32(Vector256.Min(Vector256.Max(Vector256.Round(even * inverse), low), high));
        Vector256<int> o = Vector256.ConvertToInt32(Vector256.Min(Vector256.Max(Vector256.Round(odd * inverse), low), high));
        return ((e & Vector256.Create(0xFFFF)) | Vector256.ShiftLeft(o, 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> x)
    {
        x = Vector256.Max(x, Vector256.Create(MinExponent));
        var n = Vector256.Round(x);
        var f = x - n;
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(C6), f, Vector256.Create(C5));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C4));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C3));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C2));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C1));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256<float>.One);
        // 2^n from the exponent field: n + 127 in [0, 127]; a field of 0 is the value 0 (flushes x <= -127 to 0).
        // n is integral and in range, so the native truncating conversion is exact; the saturating ConvertToInt32 cost four
        // more instructions per vector, and NaN gives 1.0 as the scale either way (p is NaN).
        var scale = Vector256.ShiftLeft(Vector256.ConvertToInt32Native(n) + Vector256.Create(127), 23).AsSingle();
        return p * scale;
    }
}
