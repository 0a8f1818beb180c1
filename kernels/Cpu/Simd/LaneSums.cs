using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>
/// The lanes of dot-product accumulators summed, four accumulators at once, in one fixed order per lane: a kernel that
/// sums one accumulator alone (<see cref="One"/>) gets the bits of the same accumulator summed among four. With AVX-512
/// the four are reduced together (halves added, then three horizontal adds), where four separate 16-lane sums cost as
/// much as the dot products they end: 30% of a decode step's projection of 8 rows (1536 x 1024 weights, one thread).
/// Other widths sum each accumulator with <see cref="IVectorOps{TVec}.Sum"/>.
/// </summary>
internal static class LaneSums<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    private static bool Reduces => typeof(TVec) == typeof(Vector512<float>) && Avx.IsSupported;

    /// <summary>[Σ s0, Σ s1, Σ s2, Σ s3].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Four(TVec s0, TVec s1, TVec s2, TVec s3)
    {
        if (Reduces)
        {
            Vector256<float> t0 = Halves(s0), t1 = Halves(s1), t2 = Halves(s2), t3 = Halves(s3);
            // [t0 0-3, t1 0-3, t2 0-3, t3 0-3 | the same of lanes 4-7], each ((x0 + x1) + (x2 + x3))
            var h = Avx.HorizontalAdd(Avx.HorizontalAdd(t0, t1), Avx.HorizontalAdd(t2, t3));
            return h.GetLower() + h.GetUpper();
        }
        return Vector128.Create(TOps.Sum(s0), TOps.Sum(s1), TOps.Sum(s2), TOps.Sum(s3));
    }

    /// <summary>Σ s, with the bits <see cref="Four"/> gives it in any of its places.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float One(TVec s)
    {
        if (Reduces)
        {
            var t = Halves(s);
            var x = Avx.HorizontalAdd(t, t);
            var h = Avx.HorizontalAdd(x, x);
            return h.GetElement(0) + h.GetElement(4);
        }
        return TOps.Sum(s);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Halves(TVec value)
    {
        var wide = Unsafe.As<TVec, Vector512<float>>(ref value);
        return wide.GetLower() + wide.GetUpper();
    }
}
