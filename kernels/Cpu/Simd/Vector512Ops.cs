using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static AttentionEngine.Kernels.Cpu.Simd.Exp2Polynomial;

namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>AVX-512 float vectors (16 lanes).</summary>
internal readonly unsafe struct Vector512Ops : IVectorOps<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;
    public static bool IsHardwareAccelerated => Vector512.IsHardwareAccelerated;
    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Broadcast(float value) => Vector512.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* source) => Vector512.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadBFloat16(ushort* source) => Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load(source).ToVector512Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadHalf(ushort* source) => HalfWidening.Widen(Vector512.WidenLower(Vector256.Load((short*)source).ToVector512Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadScaledHalf(ushort* source) => HalfWidening.WidenScaled(Vector512.WidenLower(Vector256.Load((short*)source).ToVector512Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadScaledFiniteHalf(ushort* source) => HalfWidening.WidenScaledFinite(Vector512.WidenLower(Vector256.Load((short*)source).ToVector512Unsafe()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadInt8(sbyte* source) =>
        Vector512.ConvertToSingle(Avx512F.IsSupported
            ? Avx512F.ConvertToVector512Int32(Vector128.Load(source))
            : Vector512.WidenLower(Vector512.WidenLower(Vector128.Load(source).ToVector256Unsafe().ToVector512Unsafe())));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector512<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> left, Vector512<float> right) => left + right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Subtract(Vector512<float> left, Vector512<float> right) => left - right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Multiply(Vector512<float> left, Vector512<float> right) => left * right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) =>
        Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> value)
    {
        if (!Avx.IsSupported) return Vector512.Sum(value);
        var halves = value.GetLower() + value.GetUpper();
        var pairs = Avx.HorizontalAdd(halves, halves);
        var quads = Avx.HorizontalAdd(pairs, pairs);
        return quads.GetElement(0) + quads.GetElement(4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> SumFour(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        if (!Avx.IsSupported) return Vector128.Create(Sum(a), Sum(b), Sum(c), Sum(d));
        // The 256-bit halves added, then [a 0-3, b 0-3, c 0-3, d 0-3 | the same of lanes 4-7] by horizontal adds.
        Vector256<float> ha = a.GetLower() + a.GetUpper(), hb = b.GetLower() + b.GetUpper();
        Vector256<float> hc = c.GetLower() + c.GetUpper(), hd = d.GetLower() + d.GetUpper();
        var quads = Avx.HorizontalAdd(Avx.HorizontalAdd(ha, hb), Avx.HorizontalAdd(hc, hd));
        return quads.GetLower() + quads.GetUpper();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> left, Vector512<float> right) => Vector512.Max(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MaxNative(Vector512<float> left, Vector512<float> right) => Vector512.MaxNative(left, right);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Saturate(Vector512<float> value)
    {
        // x86 min/max return their second operand when either is NaN: with the bound first, NaN passes through.
        if (Avx512F.IsSupported)
            return Avx512F.Max(Vector512.Create(-float.MaxValue), Avx512F.Min(Vector512.Create(float.MaxValue), value));
        return Vector512.Max(Vector512.Create(-float.MaxValue), Vector512.Min(Vector512.Create(float.MaxValue), value));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ReplaceNegativeInfinity(Vector512<float> value, Vector512<float> replacement) =>
        Vector512.ConditionalSelect(Vector512.Equals(value, Vector512.Create(float.NegativeInfinity)), replacement, value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Abs(Vector512<float> value) => Vector512.Abs(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MaxMagnitudeNative(Vector512<float> left, Vector512<float> right) =>
        Avx512DQ.IsSupported ? Avx512DQ.Range(left, right, MaxMagnitudeSignCleared) : Vector512.MaxNative(Vector512.Abs(left), Vector512.Abs(right));

    /// <summary>vrangeps control: imm[1:0] = 11 the larger magnitude, imm[3:2] = 10 its sign cleared.</summary>
    private const byte MaxMagnitudeSignCleared = 0b1011;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> NegativeInfinityMask(Vector512<float> value) => Vector512.Equals(value, Vector512.Create(float.NegativeInfinity));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Or(Vector512<float> left, Vector512<float> right) => left | right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnySet(Vector512<float> mask) => Vector512.ExtractMostSignificantBits(mask) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAddPairs(Vector512<float> accumulator, Vector512<float> pairs, int* keyPair)
    {
        Vector512<int> products;
        if (Avx512BW.IsSupported) products = Avx512BW.MultiplyAddAdjacent(pairs.AsInt16(), Vector512.Create(*keyPair).AsInt16());
        else products = PortablePairProducts(pairs.AsInt32(), Vector512.Create(*keyPair));
        return (accumulator.AsInt32() + products).AsSingle();
    }

    /// <summary>What vpmaddwd computes, in portable operations: lo·lo + hi·hi of sign-extended int16 halves.</summary>
    internal static Vector512<int> PortablePairProducts(Vector512<int> x, Vector512<int> k) =>
        Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(x, 16), 16) * Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(k, 16), 16)
        + Vector512.ShiftRightArithmetic(x, 16) * Vector512.ShiftRightArithmetic(k, 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ConvertInt32ToSingle(Vector512<float> bits) => Vector512.ConvertToSingle(bits.AsInt32());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> QuantizePairs(Vector512<float> even, Vector512<float> odd, Vector512<float> inverse)
    {
        Vector512<float> low = Vector512.Create(-127f), high = Vector512.Create(127f);
        Vector512<int> e = Vector512.ConvertToInt32(Vector512.Min(Vector512.Max(Vector512.Round(even * inverse), low), high));
        Vector512<int> o = Vector512.ConvertToInt32(Vector512.Min(Vector512.Max(Vector512.Round(odd * inverse), low), high));
        return ((e & Vector512.Create(0xFFFF)) | Vector512.ShiftLeft(o, 16)).AsSingle();
    }

    /// <remarks>
    /// 2^n comes from vscalefps, one instruction, where the exponent-field scale took four (convert, add, shift,
    /// multiply): the softmax of a 64 x 64 tile took 0.85x the time with it and the degree-6 polynomial (in-process,
    /// 1 thread). It also gives the denormals below 2^-126 that the field flushed to 0, and infinity for n > 127
    /// instead of a wrapped field. NaN stays NaN.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2(Vector512<float> x)
    {
        x = Vector512.Max(x, Vector512.Create(MinScaledExponent));
        var n = Vector512.Round(x);
        var f = x - n;
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(C6), f, Vector512.Create(C5));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C4));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C3));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C2));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C1));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512<float>.One);
        return Avx512F.Scale(p, n);
    }
}
