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
    public void Finite_widening_equals_the_full_widening_for_every_finite_pattern_at_every_width()
    {
        CheckFiniteWidth<Vector128Ops, Vector128<float>>();
        if (Vector256.IsHardwareAccelerated) CheckFiniteWidth<Vector256Ops, Vector256<float>>();
        if (Vector512.IsHardwareAccelerated) CheckFiniteWidth<Vector512Ops, Vector512<float>>();
    }

    private static void CheckFiniteWidth<TOps, TVec>() where TOps : struct, IVectorOps<TVec> where TVec : struct
    {
        // Every finite pattern (exponent field below 31), in order, padded with zeros to whole vectors.
        var patterns = AllPatterns().Where(b => (b & 0x7C00) != 0x7C00).ToList();
        while (patterns.Count % TOps.Count != 0) patterns.Add(0);
        var source = patterns.ToArray();
        var widened = new float[source.Length];
        fixed (ushort* bits = source)
        fixed (float* destination = widened)
        {
            for (int n = 0; n < source.Length; n += TOps.Count) TOps.Store(destination + n, ElementLoads<TOps, TVec>.Load((FiniteHalf*)bits + n));
        }
        AssertSameAsScalar(source, widened);
    }

    [Fact]
    public void The_block_scan_finds_an_infinity_or_nan_at_any_position_and_nothing_in_finite_blocks()
    {
        // Widths around every vector step (16, 32) and tail; rows with padding between them (pitch > width).
        foreach (int width in new[] { 1, 7, 16, 24, 32, 40, 64, 100, 128 })
        foreach (int rows in new[] { 1, 3 })
        {
            int pitch = width + 5;
            var block = new ushort[rows * pitch];
            var random = new Random(width * 7 + rows);
            for (int n = 0; n < block.Length; n++) block[n] = (ushort)(random.Next(0, 0x7C00) | (random.Next(2) << 15)); // finite, both signs
            // Padding between rows holds infinities: the scan must read only the rows' widths.
            for (int r = 0; r < rows; r++) for (int x = width; x < pitch; x++) block[r * pitch + x] = 0x7C00;
            fixed (ushort* first = block) Assert.False(FiniteHalf.HasInfinityOrNaN((Half*)first, pitch, rows, width), $"finite block, width {width}");
            foreach (ushort special in new ushort[] { 0x7C00, 0xFC00, 0x7E00, 0xFFFF, 0x7C01 })
            for (int r = 0; r < rows; r++)
            for (int x = 0; x < width; x++)
            {
                ushort kept = block[r * pitch + x];
                block[r * pitch + x] = special;
                fixed (ushort* first = block)
                    Assert.True(FiniteHalf.HasInfinityOrNaN((Half*)first, pitch, rows, width), $"0x{special:X4} at row {r}, column {x}, width {width}");
                block[r * pitch + x] = kept;
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
