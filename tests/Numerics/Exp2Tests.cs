using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Tests;

/// <summary>
/// The softmax's 2^x at each vector width this machine runs: within one ulp of 2^x wherever that is a normal float, the
/// same bits at every width there, exactly 0 for masked scores (−infinity), and NaN kept NaN.
/// </summary>
public class Exp2Tests
{
    /// <summary>Every 9973rd float in [-1/2, 1/2] (the polynomial's whole domain), and steps of 1/1024 over the normal range.</summary>
    private static float[] Arguments()
    {
        var values = new List<float>();
        for (uint bits = 0; bits <= BitConverter.SingleToUInt32Bits(0.5f); bits += 9973)
        {
            values.Add(BitConverter.UInt32BitsToSingle(bits));
            values.Add(-BitConverter.UInt32BitsToSingle(bits));
        }
        for (int step = -126 * 1024; step <= 127 * 1024; step++) values.Add(step / 1024f);
        return values.ToArray();
    }

    private static float[] Run<TOps, TVec>(float[] arguments) where TOps : struct, IVectorOps<TVec> where TVec : struct
    {
        int c = TOps.Count;
        var results = new float[arguments.Length];
        var lanes = new float[c];
        for (int i = 0; i < arguments.Length; i += c)
        {
            // A partial last vector repeats its first argument: every lane is a real argument.
            for (int n = 0; n < c; n++) lanes[n] = arguments[Math.Min(i + n, arguments.Length - 1)];
            unsafe
            {
                fixed (float* l = lanes) TOps.Store(l, TOps.Exp2(TOps.Load(l)));
            }
            for (int n = 0; n < c && i + n < arguments.Length; n++) results[i + n] = lanes[n];
        }
        return results;
    }

    private static void CheckWidth<TOps, TVec>() where TOps : struct, IVectorOps<TVec> where TVec : struct
    {
        var arguments = Arguments();
        var results = Run<TOps, TVec>(arguments);
        for (int i = 0; i < arguments.Length; i++)
        {
            double exact = Math.Pow(2, arguments[i]);
            float nearest = (float)exact;
            double ulp = MathF.BitIncrement(nearest) - nearest;
            Assert.True(Math.Abs(results[i] - exact) <= ulp, $"2^{arguments[i]:R}: got {results[i]:R}, exact {exact:R}");
        }
        var specials = Run<TOps, TVec>([float.NegativeInfinity, -1e30f, -200f, -160f, float.NaN]);
        Assert.All(specials[..4], p => Assert.Equal(0u, BitConverter.SingleToUInt32Bits(p)));
        Assert.True(float.IsNaN(specials[4]));
    }

    [Fact]
    public void Vector128_exp2_is_within_one_ulp_and_masked_scores_give_zero() => CheckWidth<Vector128Ops, Vector128<float>>();

    [Fact]
    public void Vector256_exp2_is_within_one_ulp_and_masked_scores_give_zero()
    {
        Assert.SkipUnless(Vector256.IsHardwareAccelerated, "this machine has no 256-bit vectors");
        CheckWidth<Vector256Ops, Vector256<float>>();
    }

    [Fact]
    public void Vector512_exp2_is_within_one_ulp_and_masked_scores_give_zero()
    {
        Assert.SkipUnless(Vector512.IsHardwareAccelerated, "this machine has no AVX-512");
        CheckWidth<Vector512Ops, Vector512<float>>();
    }

    [Fact]
    public void Every_width_gives_the_same_bits_where_2_to_the_x_is_normal()
    {
        // vscalefps (AVX-512) and the exponent-field scale (128/256) scale the same polynomial exactly by 2^n.
        var arguments = Arguments();
        var narrow = Run<Vector128Ops, Vector128<float>>(arguments);
        var others = new List<float[]>();
        if (Vector256.IsHardwareAccelerated) others.Add(Run<Vector256Ops, Vector256<float>>(arguments));
        if (Vector512.IsHardwareAccelerated) others.Add(Run<Vector512Ops, Vector512<float>>(arguments));
        Assert.SkipWhen(others.Count == 0, "this machine has one vector width");
        foreach (var wide in others)
            for (int i = 0; i < arguments.Length; i++)
                Assert.True(BitConverter.SingleToUInt32Bits(narrow[i]) == BitConverter.SingleToUInt32Bits(wide[i]),
                    $"2^{arguments[i]:R}: {narrow[i]:R} against {wide[i]:R}");
    }
}
