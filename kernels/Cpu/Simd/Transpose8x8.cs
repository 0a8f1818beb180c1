using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>
/// 8 x 8 float transposes with AVX shuffles (unpack, shuffle, 128-bit permute: 24 operations per block), for laying
/// a tile's queries out as Qᵀ: the scalar scatter cost about an eighth of the score GEMM at N = 64. Pure data
/// movement: the values, and so every result, are unchanged.
/// </summary>
internal static unsafe class Transpose8x8
{
    public static bool IsSupported => Avx.IsSupported;

    /// <summary>
    /// Writes columns [0, columns) of 8 rows (given by pointers) as 8-float runs: element (i, x) goes to
    /// <paramref name="destination"/>[x · <paramref name="pitch"/> + i]. <paramref name="columns"/> must be a multiple of 8.
    /// </summary>
    public static void Rows(float** rows, int columns, float* destination, nint pitch)
    {
        for (int x = 0; x < columns; x += 8)
        {
            Block(Avx.LoadVector256(rows[0] + x), Avx.LoadVector256(rows[1] + x), Avx.LoadVector256(rows[2] + x), Avx.LoadVector256(rows[3] + x),
                Avx.LoadVector256(rows[4] + x), Avx.LoadVector256(rows[5] + x), Avx.LoadVector256(rows[6] + x), Avx.LoadVector256(rows[7] + x),
                destination + x * pitch, pitch);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        Vector256<float> r4, Vector256<float> r5, Vector256<float> r6, Vector256<float> r7, float* destination, nint pitch)
    {
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44);
        var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44);
        var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44);
        var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44);
        var s7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(destination, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(destination + pitch, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(destination + 2 * pitch, Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(destination + 3 * pitch, Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(destination + 4 * pitch, Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(destination + 5 * pitch, Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(destination + 6 * pitch, Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(destination + 7 * pitch, Avx.Permute2x128(s3, s7, 0x31));
    }
}
