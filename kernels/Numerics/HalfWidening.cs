using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttentionEngine.Kernels;

/// <summary>
/// IEEE binary16 to float in vector registers, exactly (every Half, subnormals, ±infinity and NaN payloads included).
/// .NET 10 exposes no F16C, and TensorPrimitives' converter costs a call and span checks per row, which made fp16
/// storage 5-15% slower than bf16 in the kernels. The input is the half's bits sign-extended to 32 (vpmovsxwd, as cheap
/// as zero extension). Shifted left by 13, the sign lands on the float's sign bit and exponent and mantissa in float
/// position, with three copies of the sign above the exponent, cleared by one mask. Those bits read as a float 2^-112
/// times the half's value, for normal and subnormal halves alike (a subnormal half becomes a float subnormal), so one
/// multiply by 2^112 rebiases both exactly (a power-of-two scaling of a value float holds), keeping the sign. Infinity
/// and NaN (half exponent 31) get the float's all-ones exponent, their mantissa kept, by an OR under the comparison's
/// mask: with AVX-512 the JIT emits one masked vorps from the compare's mask register, where an AND of the mask and an
/// OR took a mask-to-vector move and a ternary op (decode of fp16 runs on these operations: a dot product over
/// L1-resident halves went from 0.054 to 0.047 ns per element). Seven operations on 8 or 16 lanes with the load's
/// widening (the earlier integer form took fourteen, with a subtraction and a select for subnormals), beside the one
/// shift of a bf16 widening. A subnormal half feeds the multiply a subnormal float, which some processors finish in microcode:
/// slower for such rare vectors, the same bits. The decode kernel reads Half without the multiply and usually without the
/// select (<see cref="ScaledHalf"/>, <see cref="ScaledFiniteHalf"/>), its other factors carrying the 2^112.
/// </summary>
internal static class HalfWidening
{
    private const uint ClearSignCopies = 0x8FFF_FFFF;    // the sign-extension's copies at bits 28-30
    private const uint ShiftedExponent = 0x0F80_0000;    // the half's exponent field after the shift (bits 23-27)
    /// <summary>2^112 = 2^(127 - 15): a half's bits shifted into float position read as 2^-112 times its value.</summary>
    public const float Rebias = 5.192296858534828e+33f;
    private const uint FloatExponent = 0x7F80_0000;

    /// <summary>
    /// A finite half as the float 2^-112 times its value (<see cref="ScaledFiniteHalf"/>): <see cref="Widen(Vector512{int})"/>
    /// without the multiply and the special-value select.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> WidenScaledFinite(Vector512<int> signExtendedHalf) =>
        ((signExtendedHalf << 13).AsUInt32() & Vector512.Create(ClearSignCopies)).AsSingle();

    /// <summary>
    /// Any half as the float 2^-112 times its value (<see cref="ScaledHalf"/>); infinity and NaN stay infinity and NaN
    /// (the payload kept), so a product with a factor scaled by 2^112 is the product of the unscaled pair.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> WidenScaled(Vector512<int> signExtendedHalf)
    {
        var bits = (signExtendedHalf << 13).AsUInt32() & Vector512.Create(ClearSignCopies);
        var special = Vector512.Equals(bits & Vector512.Create(ShiftedExponent), Vector512.Create(ShiftedExponent));
        return Vector512.ConditionalSelect(special, bits | Vector512.Create(FloatExponent), bits).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen(Vector512<int> signExtendedHalf)
    {
        var bits = (signExtendedHalf << 13).AsUInt32() & Vector512.Create(ClearSignCopies);
        var value = bits.AsSingle() * Vector512.Create(Rebias);
        var special = Vector512.Equals(bits & Vector512.Create(ShiftedExponent), Vector512.Create(ShiftedExponent));
        return Vector512.ConditionalSelect(special.AsSingle(), value | Vector512.Create(FloatExponent).AsSingle(), value);
    }

    /// <summary>
    /// A finite half as the float 2^-112 times its value (<see cref="ScaledFiniteHalf"/>): <see cref="Widen(Vector256{int})"/>
    /// without the multiply and the special-value select.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> WidenScaledFinite(Vector256<int> signExtendedHalf) =>
        ((signExtendedHalf << 13).AsUInt32() & Vector256.Create(ClearSignCopies)).AsSingle();

    /// <summary>
    /// Any half as the float 2^-112 times its value (<see cref="ScaledHalf"/>); infinity and NaN stay infinity and NaN
    /// (the payload kept), so a product with a factor scaled by 2^112 is the product of the unscaled pair.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> WidenScaled(Vector256<int> signExtendedHalf)
    {
        var bits = (signExtendedHalf << 13).AsUInt32() & Vector256.Create(ClearSignCopies);
        var special = Vector256.Equals(bits & Vector256.Create(ShiftedExponent), Vector256.Create(ShiftedExponent));
        return Vector256.ConditionalSelect(special, bits | Vector256.Create(FloatExponent), bits).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen(Vector256<int> signExtendedHalf)
    {
        var bits = (signExtendedHalf << 13).AsUInt32() & Vector256.Create(ClearSignCopies);
        var value = bits.AsSingle() * Vector256.Create(Rebias);
        var special = Vector256.Equals(bits & Vector256.Create(ShiftedExponent), Vector256.Create(ShiftedExponent));
        return Vector256.ConditionalSelect(special.AsSingle(), value | Vector256.Create(FloatExponent).AsSingle(), value);
    }

    /// <summary>
    /// A finite half as the float 2^-112 times its value (<see cref="ScaledFiniteHalf"/>): <see cref="Widen(Vector128{int})"/>
    /// without the multiply and the special-value select.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> WidenScaledFinite(Vector128<int> signExtendedHalf) =>
        ((signExtendedHalf << 13).AsUInt32() & Vector128.Create(ClearSignCopies)).AsSingle();

    /// <summary>
    /// Any half as the float 2^-112 times its value (<see cref="ScaledHalf"/>); infinity and NaN stay infinity and NaN
    /// (the payload kept), so a product with a factor scaled by 2^112 is the product of the unscaled pair.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> WidenScaled(Vector128<int> signExtendedHalf)
    {
        var bits = (signExtendedHalf << 13).AsUInt32() & Vector128.Create(ClearSignCopies);
        var special = Vector128.Equals(bits & Vector128.Create(ShiftedExponent), Vector128.Create(ShiftedExponent));
        return Vector128.ConditionalSelect(special, bits | Vector128.Create(FloatExponent), bits).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Widen(Vector128<int> signExtendedHalf)
    {
        var bits = (signExtendedHalf << 13).AsUInt32() & Vector128.Create(ClearSignCopies);
        var value = bits.AsSingle() * Vector128.Create(Rebias);
        var special = Vector128.Equals(bits & Vector128.Create(ShiftedExponent), Vector128.Create(ShiftedExponent));
        return Vector128.ConditionalSelect(special.AsSingle(), value | Vector128.Create(FloatExponent).AsSingle(), value);
    }
}
