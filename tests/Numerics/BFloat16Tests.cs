namespace AttentionEngine.Tests;

public class BFloat16Tests
{
    /// <summary>The bf16 value nearest to x by exact arithmetic, ties to the even pattern: an independent definition.</summary>
    private static ushort NearestByDistance(double x, ushort below, ushort above)
    {
        double lo = BFloat16.FromBits(below), hi = BFloat16.FromBits(above);
        double dLo = Math.Abs(x - lo), dHi = Math.Abs(x - hi);
        if (dLo < dHi) return below;
        if (dHi < dLo) return above;
        return (below & 1) == 0 ? below : above;
    }

    [Fact]
    public void Every_bit_pattern_round_trips_through_float_unchanged()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            var value = BFloat16.FromBits((ushort)bits);
            float widened = value;
            Assert.Equal((uint)bits << 16, BitConverter.SingleToUInt32Bits(widened));
            Assert.Equal((ushort)bits, ((BFloat16)widened).RawValue);
            // Through double: float-to-double conversion quiets a signalling NaN (IEEE-754), so NaNs keep NaN-ness and sign.
            var viaDouble = (BFloat16)(double)widened;
            if (BFloat16.IsNaN(value)) Assert.True(BFloat16.IsNaN(viaDouble) && (viaDouble.RawValue & 0x8000) == (bits & 0x8000));
            else Assert.Equal((ushort)bits, viaDouble.RawValue);
        }
    }

    [Fact]
    public void Every_float_between_two_neighbours_rounds_to_nearest_even()
    {
        // For each finite positive or negative pattern p and its neighbour away from zero, probe floats strictly between
        // them (just above p, below, at and above the midpoint, just below the neighbour).
        uint[] probes = [1, 0x3FFF, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF];
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            var p = BFloat16.FromBits((ushort)bits);
            if (!BFloat16.IsFinite(p) || (bits & 0x7FFF) == 0x7F7F) continue; // the neighbour of MaxValue is infinity
            ushort next = (ushort)(bits + 1);
            foreach (uint probe in probes)
            {
                float x = BitConverter.UInt32BitsToSingle(((uint)bits << 16) + probe);
                Assert.Equal(NearestByDistance(x, (ushort)bits, next), ((BFloat16)x).RawValue);
            }
        }
    }

    [Fact]
    public void Overflow_rounds_to_infinity_and_the_largest_finite_survives()
    {
        Assert.Equal(BFloat16.MaxValue.RawValue, ((BFloat16)(float)BFloat16.MaxValue).RawValue);
        float halfwayToInfinity = BitConverter.UInt32BitsToSingle(0x7F7F8000); // tie: MaxValue has an odd pattern, so up
        Assert.True(BFloat16.IsInfinity((BFloat16)halfwayToInfinity));
        Assert.True(BFloat16.IsInfinity((BFloat16)float.MaxValue));
        Assert.Equal(BFloat16.NegativeInfinity.RawValue, ((BFloat16)float.NegativeInfinity).RawValue);
        Assert.Equal(BFloat16.PositiveInfinity.RawValue, ((BFloat16)1e300).RawValue);
    }

    [Fact]
    public void NaN_stays_NaN_with_its_sign_even_when_the_payload_is_in_the_low_bits()
    {
        foreach (uint bits in new uint[] { 0x7FC00000, 0x7F800001, 0xFF800001, 0x7FA00000, 0xFFFFFFFF })
        {
            var converted = (BFloat16)BitConverter.UInt32BitsToSingle(bits);
            Assert.True(BFloat16.IsNaN(converted), $"0x{bits:X8} became 0x{converted.RawValue:X4}");
            Assert.Equal(bits >> 31, (uint)converted.RawValue >> 15);
        }
        Assert.True(BFloat16.IsNaN((BFloat16)double.NaN));
    }

    [Fact]
    public void Conversion_from_double_rounds_once()
    {
        // 1 + 2^-8 is exactly half-way between bf16 1 and 1 + 2^-7; a hair above it must round up. Through float the
        // hair is lost (1 + 2^-8 + 2^-40 rounds to the tie), and tie-to-even would wrongly give 1.
        double justAboveTie = 1 + Math.ScaleB(1, -8) + Math.ScaleB(1, -40);
        Assert.Equal(1 + Math.ScaleB(1, -7), (double)(BFloat16)justAboveTie);
        Assert.Equal(1.0, (double)(BFloat16)(1 + Math.ScaleB(1, -8)));
        var rng = new Random(7);
        for (int n = 0; n < 200_000; n++)
        {
            double x = (rng.NextDouble() * 2 - 1) * Math.ScaleB(1, rng.Next(-140, 128));
            var result = (BFloat16)x;
            if (BFloat16.IsInfinity(result)) continue;
            ushort b = result.RawValue;
            // The result must be at least as close as both neighbours.
            double r = result, err = Math.Abs(x - r);
            foreach (ushort neighbour in new[] { (ushort)(b + 1), (ushort)(b - 1) })
            {
                var other = BFloat16.FromBits(neighbour);
                if (BFloat16.IsFinite(other) && ((neighbour ^ b) & 0x8000) == 0)
                    Assert.True(err <= Math.Abs(x - (double)other), $"{x:R} -> {r:R} but {(double)other:R} is closer");
            }
        }
    }

    [Fact]
    public void Comparisons_follow_ieee_semantics()
    {
        Assert.True(BFloat16.NaN != BFloat16.NaN);
        Assert.True(BFloat16.NaN.Equals(BFloat16.NaN));
        Assert.True(BFloat16.FromBits(0x8000) == BFloat16.Zero);
        Assert.True(BFloat16.One > BFloat16.Zero);
        Assert.Equal("1", BFloat16.One.ToString());
        Assert.Equal(0.0078125f, (float)BFloat16.FromBits(0x3F81) - 1f);
    }
}
