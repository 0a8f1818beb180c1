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

    [Fact]
    public void Scaled_widenings_are_the_widening_times_2_to_the_minus_112_for_every_pattern_at_every_width()
    {
        CheckScaledWidth<Vector128Ops, Vector128<float>>();
        if (Vector256.IsHardwareAccelerated) CheckScaledWidth<Vector256Ops, Vector256<float>>();
        if (Vector512.IsHardwareAccelerated) CheckScaledWidth<Vector512Ops, Vector512<float>>();
    }

    /// <summary>
    /// ScaledHalf: finite patterns read as exactly 2^-112 times the value (so a factor times 2^112 gives the same
    /// product), infinity and NaN as the full widening's bits. ScaledFiniteHalf: the same bits on finite patterns; on
    /// infinity and NaN a finite value above <see cref="ScaledFiniteHalf.FiniteLargest"/>, and no finite pattern above it,
    /// so the kernels' check (Track, LoadedFinite) finds a special in any lane and never a finite one.
    /// </summary>
    private static void CheckScaledWidth<TOps, TVec>() where TOps : struct, IVectorOps<TVec> where TVec : struct
    {
        var patterns = AllPatterns();
        var scaled = new float[patterns.Length];
        var scaledFinite = new float[patterns.Length];
        fixed (ushort* bits = patterns)
        fixed (float* s = scaled, f = scaledFinite)
        {
            for (int n = 0; n < patterns.Length; n += TOps.Count)
            {
                TOps.Store(s + n, ElementLoads<TOps, TVec>.Load((ScaledHalf*)bits + n));
                TOps.Store(f + n, ElementLoads<TOps, TVec>.Load((ScaledFiniteHalf*)bits + n));
            }
        }
        for (int n = 0; n < patterns.Length; n++)
        {
            float exact = (float)BitConverter.UInt16BitsToHalf(patterns[n]);
            bool special = (patterns[n] & 0x7C00) == 0x7C00;
            if (special)
            {
                Assert.Equal(float.IsNaN(exact) ? (uint)(patterns[n] & 0x8000) << 16 | (uint)(patterns[n] & 0x3FF) << 13 | 0x7F80_0000u
                    : BitConverter.SingleToUInt32Bits(exact), BitConverter.SingleToUInt32Bits(scaled[n]));
                Assert.True(MathF.Abs(scaledFinite[n]) > ScaledFiniteHalf.FiniteLargest, $"0x{patterns[n]:X4} read as finite {scaledFinite[n]:R}");
            }
            else
            {
                Assert.Equal((double)exact, scaled[n] * Math.Pow(2, 112));
                Assert.Equal(BitConverter.SingleToUInt32Bits(scaled[n]), BitConverter.SingleToUInt32Bits(scaledFinite[n]));
                Assert.True(MathF.Abs(scaledFinite[n]) <= ScaledFiniteHalf.FiniteLargest);
            }
        }
    }

    [Fact]
    public void The_finite_check_finds_an_infinity_or_nan_in_any_lane_and_nothing_in_finite_vectors()
    {
        CheckTracking<Vector128Ops, Vector128<float>>();
        if (Vector256.IsHardwareAccelerated) CheckTracking<Vector256Ops, Vector256<float>>();
        if (Vector512.IsHardwareAccelerated) CheckTracking<Vector512Ops, Vector512<float>>();
    }

    private static void CheckTracking<TOps, TVec>() where TOps : struct, IVectorOps<TVec> where TVec : struct
    {
        var random = new Random(TOps.Count);
        int c = TOps.Count;
        var block = new ushort[4 * c];
        fixed (ushort* bits = block)
        {
            var h = (ScaledFiniteHalf*)bits;
            bool Finite()
            {
                TVec largest = TOps.Zero;
                ElementLoads<TOps, TVec>.Track<ScaledFiniteHalf>(ref largest, ElementLoads<TOps, TVec>.Load(h));
                ElementLoads<TOps, TVec>.Track<ScaledFiniteHalf>(ref largest, ElementLoads<TOps, TVec>.Load(h + c), ElementLoads<TOps, TVec>.Load(h + 2 * c));
                ElementLoads<TOps, TVec>.Track<ScaledFiniteHalf>(ref largest, ElementLoads<TOps, TVec>.Load(h + 3 * c), TOps.Zero, TOps.Zero, TOps.Zero);
                return ElementLoads<TOps, TVec>.LoadedFinite<ScaledFiniteHalf>(largest);
            }
            for (int trial = 0; trial < 200; trial++)
            {
                // Finite, both signs, the largest magnitudes included.
                for (int n = 0; n < block.Length; n++) block[n] = (ushort)((trial % 2 == 0 ? random.Next(0, 0x7C00) : random.Next(0x7B00, 0x7C00)) | (random.Next(2) << 15));
                Assert.True(Finite(), $"finite vectors, trial {trial}");
                int at = random.Next(block.Length);
                ushort kept = block[at];
                block[at] = new ushort[] { 0x7C00, 0xFC00, 0x7E00, 0xFFFF, 0x7C01 }[trial % 5];
                Assert.False(Finite(), $"0x{block[at]:X4} at element {at}");
                block[at] = kept;
            }
        }
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
