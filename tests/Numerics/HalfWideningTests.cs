using System.Runtime.Intrinsics;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Tests;

/// <summary>
/// The in-register Half widening the kernels read fp16 K and V with, against .NET's scalar conversion, on every one of
/// the 65,536 bit patterns, at each vector width this machine runs and through the bulk row conversion.
/// </summary>
public unsafe class HalfWideningTests
{
    private static ushort[] AllPatterns() => Enumerable.Range(0, 65536).Select(b => (ushort)b).ToArray();

    private static void AssertSameAsScalar(ushort[] patterns, float[] widened)
    {
        for (int n = 0; n < patterns.Length; n++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf(patterns[n]);
            if (float.IsNaN(expected))
            {
                // A NaN keeps NaN-ness, sign and payload (the payload moves up 13 bits, as F16C's vcvtph2ps does).
                Assert.True(float.IsNaN(widened[n]), $"0x{patterns[n]:X4} widened to {widened[n]}");
                Assert.Equal((uint)(patterns[n] & 0x8000) << 16 | (uint)(patterns[n] & 0x3FF) << 13 | 0x7F80_0000u,
                    BitConverter.SingleToUInt32Bits(widened[n]));
            }
            else Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(widened[n]),
                $"0x{patterns[n]:X4}: expected {expected:R}, got {widened[n]:R}");
        }
    }

    [Fact]
    public void Vector128_widening_is_exact_for_every_pattern() => CheckWidth<Vector128Ops, Vector128<float>>();

    [Fact]
    public void Vector256_widening_is_exact_for_every_pattern()
    {
        Assert.SkipUnless(Vector256.IsHardwareAccelerated, "this machine has no 256-bit vectors");
        CheckWidth<Vector256Ops, Vector256<float>>();
    }

    [Fact]
    public void Vector512_widening_is_exact_for_every_pattern()
    {
        Assert.SkipUnless(Vector512.IsHardwareAccelerated, "this machine has no AVX-512");
        CheckWidth<Vector512Ops, Vector512<float>>();
    }

    [Fact]
    public void Row_conversion_is_exact_for_every_pattern_and_every_tail_length()
    {
        var patterns = AllPatterns();
        var widened = new float[patterns.Length];
        fixed (ushort* source = patterns)
        fixed (float* destination = widened)
        {
            // Rows of odd lengths exercise the vector body and the scalar tail at every offset.
            for (int start = 0, length = 1; start < patterns.Length; start += length, length = length % 37 + 1)
                ElementConversion.ToSingle((Half*)source + start, 1, Math.Min(length, patterns.Length - start), destination + start);
        }
        AssertSameAsScalar(patterns, widened);
    }

    private static void CheckWidth<TOps, TVec>() where TOps : struct, IVectorOps<TVec> where TVec : struct
    {
        var patterns = AllPatterns();
        var widened = new float[patterns.Length];
        fixed (ushort* source = patterns)
        fixed (float* destination = widened)
        {
            for (int n = 0; n < patterns.Length; n += TOps.Count) TOps.Store(destination + n, ElementLoads<TOps, TVec>.Load((Half*)source + n));
        }
        AssertSameAsScalar(patterns, widened);
    }
}
