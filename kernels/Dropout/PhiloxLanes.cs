using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Dropout;

/// <summary>
/// Philox4x32-10 on eight counters at once (AVX2), one per 32-bit lane: the same words as <see cref="Philox4x32"/>,
/// lane by lane (integer arithmetic is exact, so the width cannot change a bit). AVX2 multiplies only the even 32-bit
/// lanes into 64-bit products, so each multiply-high-low runs twice (even lanes, then odd lanes shifted down) and the
/// halves are blended back into lane order.
/// </summary>
internal static class PhiloxLanes
{
    public static bool IsSupported => Avx2.IsSupported;

    public static void Generate(
        Vector256<uint> c0, Vector256<uint> c1, Vector256<uint> c2, Vector256<uint> c3, uint k0, uint k1,
        out Vector256<uint> w0, out Vector256<uint> w1, out Vector256<uint> w2, out Vector256<uint> w3)
    {
        var m0 = Vector256.Create(Philox4x32.Multiplier0);
        var m1 = Vector256.Create(Philox4x32.Multiplier1);
        for (int round = 0; round < Philox4x32.Rounds; round++)
        {
            if (round > 0)
            {
                k0 += Philox4x32.KeyBump0;
                k1 += Philox4x32.KeyBump1;
            }
            var (hi0, lo0) = MultiplyHighLow(c0, m0);
            var (hi1, lo1) = MultiplyHighLow(c2, m1);
            c0 = hi1 ^ c1 ^ Vector256.Create(k0);
            c1 = lo1;
            c2 = hi0 ^ c3 ^ Vector256.Create(k1);
            c3 = lo0;
        }
        (w0, w1, w2, w3) = (c0, c1, c2, c3);
    }

    /// <summary>The high and low halves of a · m per 32-bit lane.</summary>
    private static (Vector256<uint> High, Vector256<uint> Low) MultiplyHighLow(Vector256<uint> a, Vector256<uint> m)
    {
        const byte OddLanes = 0b10101010;
        Vector256<ulong> even = Avx2.Multiply(a, m);
        Vector256<ulong> odd = Avx2.Multiply(Avx2.ShiftRightLogical(a.AsUInt64(), 32).AsUInt32(), m);
        var low = Avx2.Blend(even.AsUInt32(), Avx2.ShiftLeftLogical(odd, 32).AsUInt32(), OddLanes);
        var high = Avx2.Blend(Avx2.ShiftRightLogical(even, 32).AsUInt32(), odd.AsUInt32(), OddLanes);
        return (high, low);
    }
}
