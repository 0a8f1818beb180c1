using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Tests;

/// <summary>
/// The kernels' horizontal sums (<see cref="IVectorOps{TVec}.Sum"/>, <see cref="IVectorOps{TVec}.SumFour"/>): an
/// accumulator summed alone gets the bits it gets among four, in every place of the four, and the sum is the lanes' sum
/// within float rounding. Decode scores rely on it: a key scored in a group of four
/// in a contiguous cache may be scored alone where a paged run ends, and must get the same bits.
/// </summary>
public unsafe class VectorSumTests
{
    private static void Check<TOps, TVec>() where TOps : struct, IVectorOps<TVec> where TVec : struct
    {
        var random = new Random(5);
        int c = TOps.Count;
        var lanes = new float[4 * c];
        for (int trial = 0; trial < 2000; trial++)
        {
            // Magnitudes spread over 2^-20..2^20 with both signs: different summation orders round differently.
            for (int n = 0; n < lanes.Length; n++) lanes[n] = (float)((random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-20, 21)));
            fixed (float* l = lanes)
            {
                TVec s0 = TOps.Load(l), s1 = TOps.Load(l + c), s2 = TOps.Load(l + 2 * c), s3 = TOps.Load(l + 3 * c);
                var four = TOps.SumFour(s0, s1, s2, s3);
                var alone = new[] { TOps.Sum(s0), TOps.Sum(s1), TOps.Sum(s2), TOps.Sum(s3) };
                var rotated = TOps.SumFour(s3, s0, s1, s2);
                for (int i = 0; i < 4; i++)
                {
                    Assert.Equal(BitConverter.SingleToUInt32Bits(alone[i]), BitConverter.SingleToUInt32Bits(four.GetElement(i)));
                    Assert.Equal(BitConverter.SingleToUInt32Bits(alone[i]), BitConverter.SingleToUInt32Bits(rotated.GetElement((i + 1) % 4)));
                    double exact = 0, magnitude = 0;
                    for (int n = 0; n < c; n++)
                    {
                        exact += lanes[i * c + n];
                        magnitude += Math.Abs(lanes[i * c + n]);
                    }
                    // Each of the log2(c) levels of the tree rounds once: at most that many half-ulps of the magnitude.
                    Assert.True(Math.Abs(alone[i] - exact) <= Math.Log2(c) * magnitude * Math.Pow(2, -24), $"sum {alone[i]:R}, exact {exact:R}");
                }
            }
        }
    }

    [Fact]
    public void Vector128_sums_agree_alone_and_in_fours() => Check<Vector128Ops, Vector128<float>>();

    [Fact]
    public void Vector256_sums_agree_alone_and_in_fours()
    {
        Assert.SkipUnless(Vector256.IsHardwareAccelerated, "this machine has no 256-bit vectors");
        Check<Vector256Ops, Vector256<float>>();
    }

    [Fact]
    public void Vector512_sums_agree_alone_and_in_fours()
    {
        Assert.SkipUnless(Vector512.IsHardwareAccelerated, "this machine has no AVX-512");
        Check<Vector512Ops, Vector512<float>>();
    }
}
