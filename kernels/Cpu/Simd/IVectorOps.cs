using System.Runtime.Intrinsics;
namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>
/// The float vector operations the CPU kernel is written in, one implementation per width (Vector512, Vector256,
/// Vector128), after TensorPrimitives' operator structs: the kernel is generic over a struct implementing this, so
/// the JIT compiles one specialised copy per width and every call inlines.
/// </summary>
internal unsafe interface IVectorOps<TVec> where TVec : struct
{
    /// <summary>Floats per vector.</summary>
    static abstract int Count { get; }

    /// <summary>True when this width runs in hardware on this machine.</summary>
    static abstract bool IsHardwareAccelerated { get; }

    static abstract TVec Zero { get; }
    static abstract TVec Broadcast(float value);
    static abstract TVec Load(float* source);

    /// <summary>Count BFloat16 values widened to float (exact: a bf16 is the top half of a float).</summary>
    static abstract TVec LoadBFloat16(ushort* source);

    /// <summary>Count Half values widened to float, exactly (<see cref="HalfWidening"/>).</summary>
    static abstract TVec LoadHalf(ushort* source);

    /// <summary>Count Half values as floats 2^-112 times their value, exactly (<see cref="ScaledHalf"/>).</summary>
    static abstract TVec LoadScaledHalf(ushort* source);

    /// <summary>As <see cref="LoadScaledHalf"/> for finite values (<see cref="ScaledFiniteHalf"/>; infinity or NaN would come out finite).</summary>
    static abstract TVec LoadScaledFiniteHalf(ushort* source);

    /// <summary>Count int8 values converted to float (exact).</summary>
    static abstract TVec LoadInt8(sbyte* source);
    static abstract void Store(float* destination, TVec value);
    static abstract TVec Add(TVec left, TVec right);
    static abstract TVec Subtract(TVec left, TVec right);
    static abstract TVec Multiply(TVec left, TVec right);

    /// <summary>a · b + c, fused (one rounding).</summary>
    static abstract TVec MultiplyAdd(TVec a, TVec b, TVec c);

    /// <summary>
    /// Sum of the lanes, in a fixed order (so repeated calls round identically): the order <see cref="SumFour"/> gives
    /// the value in any of its places, so a dot product summed alone and among four rounds alike.
    /// </summary>
    static abstract float Sum(TVec value);

    /// <summary>
    /// [Σ a, Σ b, Σ c, Σ d], each in <see cref="Sum"/>'s order. On x86 the four are reduced together by horizontal adds:
    /// four separate sums cost as much as the dot products they end at D = 64 (30% of a decode step's 8-row projection
    /// of 1536 x 1024 weights, one thread).
    /// </summary>
    static abstract Vector128<float> SumFour(TVec a, TVec b, TVec c, TVec d);

    /// <summary>IEEE maximum (NaN propagates, so garbage inputs stay visible).</summary>
    static abstract TVec Max(TVec left, TVec right);

    /// <summary>
    /// The hardware maximum (one vmaxps; <see cref="Max"/> is nine instructions on x86, to order NaN and signed zeros).
    /// Which operand a NaN lane yields depends on the hardware (x86: <paramref name="right"/>), so it serves only where a
    /// NaN input reaches the result by another way.
    /// </summary>
    static abstract TVec MaxNative(TVec left, TVec right);

    /// <summary>
    /// Clamps to [−float.MaxValue, float.MaxValue]: a score that overflowed to ±infinity saturates (the engine's defined
    /// fp32 range behaviour), NaN stays NaN (garbage inputs stay visible). Two native min/max instructions.
    /// </summary>
    static abstract TVec Saturate(TVec value);

    /// <summary>Where value is -infinity, replacement; elsewhere value.</summary>
    static abstract TVec ReplaceNegativeInfinity(TVec value, TVec replacement);

    /// <summary>max(|left|, |right|) lane by lane, for lanes that are not NaN (one vrangeps with AVX-512 DQ).</summary>
    static abstract TVec MaxMagnitudeNative(TVec left, TVec right);

    /// <summary>|value| (clears the sign bit).</summary>
    static abstract TVec Abs(TVec value);

    /// <summary>All-ones lanes where value is -infinity, zero lanes elsewhere.</summary>
    static abstract TVec NegativeInfinityMask(TVec value);

    /// <summary>Bitwise or (of masks).</summary>
    static abstract TVec Or(TVec left, TVec right);

    /// <summary>True when any lane of a mask has its sign bit set.</summary>
    static abstract bool AnySet(TVec mask);

    /// <summary>
    /// Integer dot products of int16 pairs (int8 scores): the lanes of <paramref name="accumulator"/> are int32 (as bits),
    /// those of <paramref name="pairs"/> two int16 each; lane i gains pairs.lo · k.lo + pairs.hi · k.hi, where k is the
    /// two int16 at <paramref name="keyPair"/>, broadcast straight from memory. Exact (vpmaddwd on x86; products of int8
    /// values cannot saturate).
    /// </summary>
    static abstract TVec MultiplyAddPairs(TVec accumulator, TVec pairs, int* keyPair);

    /// <summary>int32 lanes (as bits) to float.</summary>
    static abstract TVec ConvertInt32ToSingle(TVec bits);

    /// <summary>
    /// Two rows of values quantised to int8 and packed as int16 pairs (as bits): lane i holds
    /// clamp(round_even(even_i · inverse_i), ±127) in its low half and the same of odd_i in its high half, the operations of
    /// <c>Int8ScoreQuantizer.QuantizeRow</c> lane by lane.
    /// </summary>
    static abstract TVec QuantizePairs(TVec even, TVec odd, TVec inverse);

    /// <summary>
    /// 2^x for x ≤ 0 (what softmax needs after subtracting the row maximum), within about 2 ulp; exactly 0 for
    /// x ≤ -127 and for -infinity, exactly 1 for x = 0.
    /// </summary>
    static abstract TVec Exp2(TVec x);
}
