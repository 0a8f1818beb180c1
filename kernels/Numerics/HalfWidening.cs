using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttentionEngine.Kernels;

/// <summary>
/// IEEE binary16 to float in vector registers, exactly (every Half, subnormals, ±infinity and NaN payloads included).
/// .NET 10 exposes no F16C, and TensorPrimitives' converter costs a call and span checks per row, which made fp16
/// storage 5-15% slower than bf16 in the kernels. The bit form: exponent and mantissa shifted into float position read
/// as a float 2^-112 times the half's value, for normal and subnormal halves alike (a subnormal half becomes a float
/// subnormal), so one multiply by 2^112 rebiases both exactly (a power-of-two scaling of a value float holds). Infinity
/// and NaN (half exponent 31) come out at 2^16 and above, beyond every finite half (65504), and get the float's all-ones
/// exponent, their mantissa kept; then the sign goes back. Nine operations on 8 or 16 lanes (the earlier integer
/// form took fourteen, with a subtraction and a select for subnormals), beside the one shift of a bf16 widening. A subnormal half
/// feeds the multiply a subnormal float, which some processors finish in microcode: slower for such rare vectors, the
/// same bits.
/// </summary>
internal static class HalfWidening
{
    private const float Rebias = 5.192296858534828e+33f; // 2^112 = 2^(127 - 15)
    private const float FirstSpecial = 65536f;          // where exponent 31 lands: 2^(31 - 15)
    private const uint FloatExponent = 0x7F80_0000;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen(Vector512<uint> half)
    {
        var value = ((half & Vector512.Create(0x7FFFu)) << 13).AsSingle() * Vector512.Create(Rebias);
        value |= Vector512.GreaterThanOrEqual(value, Vector512.Create(FirstSpecial)) & Vector512.Create(FloatExponent).AsSingle();
        return value | ((half & Vector512.Create(0x8000u)) << 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen(Vector256<uint> half)
    {
        var value = ((half & Vector256.Create(0x7FFFu)) << 13).AsSingle() * Vector256.Create(Rebias);
        value |= Vector256.GreaterThanOrEqual(value, Vector256.Create(FirstSpecial)) & Vector256.Create(FloatExponent).AsSingle();
        return value | ((half & Vector256.Create(0x8000u)) << 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Widen(Vector128<uint> half)
    {
        var value = ((half & Vector128.Create(0x7FFFu)) << 13).AsSingle() * Vector128.Create(Rebias);
        value |= Vector128.GreaterThanOrEqual(value, Vector128.Create(FirstSpecial)) & Vector128.Create(FloatExponent).AsSingle();
        return value | ((half & Vector128.Create(0x8000u)) << 16).AsSingle();
    }
}
