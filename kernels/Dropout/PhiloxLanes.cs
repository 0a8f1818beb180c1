using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Dropout;

/// <summary>
/// Philox4x32-10 on eight counters at once (AVX2): the same words as <see cref="Philox4x32"/>, counter by counter
/// (integer arithmetic is exact, so the width cannot change a bit). AVX2 multiplies 32-bit lanes only into 64-bit
/// products of the even lanes, so each counter word lives in the low half of a 64-bit lane: a multiply gives hi and lo
/// at once, and the rounds never re-interleave. The high halves of the lo words hold garbage that only ever reaches
/// high halves (multiplies read low halves, xors stay in place); the outputs keep the low halves. Eight counters are
/// two vectors of four, A and B; <see cref="LowHalves"/> packs a word of both into one vector of eight lanes.
/// </summary>
internal static unsafe class PhiloxLanes
{
    public static bool IsSupported => Avx2.IsSupported;

    /// <summary>The ten rounds' key words, broadcast once per call.</summary>
    [InlineArray(Philox4x32.Rounds)]
    public struct RoundKeys
    {
        private Vector256<ulong> _key;
    }

    public static void Schedule(uint k0, uint k1, out RoundKeys keys0, out RoundKeys keys1)
    {
        keys0 = default;
        keys1 = default;
        for (int round = 0; round < Philox4x32.Rounds; round++)
        {
            keys0[round] = Vector256.Create((ulong)k0);
            keys1[round] = Vector256.Create((ulong)k1);
            k0 += Philox4x32.KeyBump0;
            k1 += Philox4x32.KeyBump1;
        }
    }

    /// <summary>Words of counters A (four) and B (four), each counter word in the low half of a 64-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Generate(
        Vector256<ulong> a0, Vector256<ulong> a1, Vector256<ulong> a2, Vector256<ulong> a3,
        Vector256<ulong> b0, Vector256<ulong> b1, Vector256<ulong> b2, Vector256<ulong> b3,
        in RoundKeys keys0, in RoundKeys keys1,
        out Vector256<ulong> wa0, out Vector256<ulong> wa1, out Vector256<ulong> wa2, out Vector256<ulong> wa3,
        out Vector256<ulong> wb0, out Vector256<ulong> wb1, out Vector256<ulong> wb2, out Vector256<ulong> wb3)
    {
        var m0 = Vector256.Create((ulong)Philox4x32.Multiplier0).AsUInt32();
        var m1 = Vector256.Create((ulong)Philox4x32.Multiplier1).AsUInt32();
        // Two rounds per iteration with the roles of the words swapped by name, not by moves: round r leaves the
        // products in the lo words (c1 = p1, c3 = p0) and the new c0, c2 in fresh variables.
        for (int round = 0; round < Philox4x32.Rounds; round += 2)
        {
            var k0 = keys0[round];
            var k1 = keys1[round];
            Vector256<ulong> pa0 = Avx2.Multiply(a0.AsUInt32(), m0), pa1 = Avx2.Multiply(a2.AsUInt32(), m1);
            Vector256<ulong> pb0 = Avx2.Multiply(b0.AsUInt32(), m0), pb1 = Avx2.Multiply(b2.AsUInt32(), m1);
            Vector256<ulong> xa0 = Avx2.ShiftRightLogical(pa1, 32) ^ a1 ^ k0, xa2 = Avx2.ShiftRightLogical(pa0, 32) ^ a3 ^ k1;
            Vector256<ulong> xb0 = Avx2.ShiftRightLogical(pb1, 32) ^ b1 ^ k0, xb2 = Avx2.ShiftRightLogical(pb0, 32) ^ b3 ^ k1;
            // Round + 1: counters (xa0, pa1, xa2, pa0).
            k0 = keys0[round + 1];
            k1 = keys1[round + 1];
            Vector256<ulong> qa0 = Avx2.Multiply(xa0.AsUInt32(), m0), qa1 = Avx2.Multiply(xa2.AsUInt32(), m1);
            Vector256<ulong> qb0 = Avx2.Multiply(xb0.AsUInt32(), m0), qb1 = Avx2.Multiply(xb2.AsUInt32(), m1);
            a0 = Avx2.ShiftRightLogical(qa1, 32) ^ pa1 ^ k0;
            a2 = Avx2.ShiftRightLogical(qa0, 32) ^ pa0 ^ k1;
            b0 = Avx2.ShiftRightLogical(qb1, 32) ^ pb1 ^ k0;
            b2 = Avx2.ShiftRightLogical(qb0, 32) ^ pb0 ^ k1;
            a1 = qa1;
            a3 = qa0;
            b1 = qb1;
            b3 = qb0;
        }
        (wa0, wa1, wa2, wa3, wb0, wb1, wb2, wb3) = (a0, a1, a2, a3, b0, b1, b2, b3);
    }

    /// <summary>
    /// The low halves of A's and B's four 64-bit lanes as eight 32-bit lanes in the order A0 A1 B0 B1 A2 A3 B2 B3
    /// (one shufps): give A the counters of lanes 0, 1, 4, 5 and B those of lanes 2, 3, 6, 7 to get them in lane order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> LowHalves(Vector256<ulong> a, Vector256<ulong> b) =>
        Avx.Shuffle(a.AsSingle(), b.AsSingle(), 0b10_00_10_00).AsUInt32();

    /// <summary>Lanes 0, 1, 4, 5 (for A) or 2, 3, 6, 7 (for B) of eight 32-bit values, zero-extended into four 64-bit lanes.</summary>
    public static Vector256<ulong> CounterWords(uint* values, bool forB)
    {
        int first = forB ? 2 : 0;
        return Vector256.Create((ulong)values[first], values[first + 1], values[first + 4], values[first + 5]);
    }
}
