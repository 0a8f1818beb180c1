using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace AttentionEngine.Kernels;

/// <summary>
/// IEEE binary16 to float in vector registers, exactly (every Half, subnormals, ±infinity and NaN payloads included).
/// .NET 10 exposes no F16C, and TensorPrimitives' converter costs a call and span checks per row, which made fp16
/// storage 5-15% slower than bf16 in the kernels. The bit form: shift exponent and mantissa into float position,
/// rebias the exponent (+112), give infinity/NaN the float's all-ones exponent (+112 more), and rebuild subnormals
/// as (2^-14 + m·2^-24) − 2^-14, which is exact in float; then put the sign back. Ten integer/float operations on
/// 8 or 16 lanes, beside the two of a bf16 widening.
/// </summary>
internal static class HalfWidening
{
    private const uint ExponentMask = 0x7C00, Rebias = 0x3800_0000, SubnormalBias = 0x3880_0000; // 112 << 23; 113 << 23
    private const float SmallestNormal = 6.103515625e-05f; // 2^-14, the float whose bits are SubnormalBias

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen(Vector512<uint> half)
    {
        var magnitude = (half & Vector512.Create(0x7FFFu)) << 13;
        var exponent = half & Vector512.Create(ExponentMask);
        var normal = magnitude + Vector512.Create(Rebias);
        normal += Vector512.Equals(exponent, Vector512.Create(ExponentMask)) & Vector512.Create(Rebias);
        var subnormal = (magnitude + Vector512.Create(SubnormalBias)).AsSingle() - Vector512.Create(SmallestNormal);
        var value = Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512<uint>.Zero).AsSingle(), subnormal, normal.AsSingle());
        return value | ((half & Vector512.Create(0x8000u)) << 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen(Vector256<uint> half)
    {
        var magnitude = (half & Vector256.Create(0x7FFFu)) << 13;
        var exponent = half & Vector256.Create(ExponentMask);
        var normal = magnitude + Vector256.Create(Rebias);
        normal += Vector256.Equals(exponent, Vector256.Create(ExponentMask)) & Vector256.Create(Rebias);
        var subnormal = (magnitude + Vector256.Create(SubnormalBias)).AsSingle() - Vector256.Create(SmallestNormal);
        var value = Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256<uint>.Zero).AsSingle(), subnormal, normal.AsSingle());
        return value | ((half & Vector256.Create(0x8000u)) << 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Widen(Vector128<uint> half)
    {
        var magnitude = (half & Vector128.Create(0x7FFFu)) << 13;
        var exponent = half & Vector128.Create(ExponentMask);
        var normal = magnitude + Vector128.Create(Rebias);
        normal += Vector128.Equals(exponent, Vector128.Create(ExponentMask)) & Vector128.Create(Rebias);
        var subnormal = (magnitude + Vector128.Create(SubnormalBias)).AsSingle() - Vector128.Create(SmallestNormal);
        var value = Vector128.ConditionalSelect(Vector128.Equals(exponent, Vector128<uint>.Zero).AsSingle(), subnormal, normal.AsSingle());
        return value | ((half & Vector128.Create(0x8000u)) << 16).AsSingle();
    }
}
