namespace AttentionEngine.Tests;

/// <summary>
/// Lane semantics of the emulator's conversions against what the hardware does. cvt.rna.tf32.f32 compiles (sm_86,
/// cuobjdump) to three instructions: a test |x| ≥ +infinity (true for infinity and NaN), an integer add of 0x1000 to the
/// bits of the other values, and a mask of the low 13 bits. The expected bits below are worked out by hand from that.
/// </summary>
public class CudaConversionTests
{
    [Theory]
    [InlineData(0x3F800000u, 0x3F800000u)] // 1.0: already a tf32
    [InlineData(0x3F800FFFu, 0x3F800000u)] // below half a unit: down
    [InlineData(0x3F801000u, 0x3F802000u)] // exactly half: away from zero
    [InlineData(0xBF801000u, 0xBF802000u)] // negative tie: away from zero too
    [InlineData(0x3F803000u, 0x3F804000u)] // odd tie: away (even rounding would also give this; the next one tells)
    [InlineData(0x3F805000u, 0x3F806000u)] // a tie whose lower neighbour is even: away, not to even
    [InlineData(0x3FFFF000u, 0x40000000u)] // the carry moves into the exponent
    [InlineData(0x7F7FF000u, 0x7F800000u)] // past the largest tf32: infinity
    [InlineData(0x00001000u, 0x00002000u)] // subnormal tie
    [InlineData(0x7F800000u, 0x7F800000u)] // +infinity
    [InlineData(0xFF800000u, 0xFF800000u)] // -infinity
    [InlineData(0x7FC00000u, 0x7FC00000u)] // the canonical quiet NaN
    [InlineData(0x7FFFFFFFu, 0x7FFFE000u)] // NaN: not rounded, low bits masked
    [InlineData(0x7FC01FFFu, 0x7FC00000u)] // NaN: no carry into the payload
    [InlineData(0x7F800001u, 0x7F800000u)] // a NaN whose payload is only in the low bits comes out as infinity
    [InlineData(0xFFC00FFFu, 0xFFC00000u)] // negative NaN keeps its sign
    public void Cvt_rna_tf32_matches_the_hardware(uint input, uint expected)
    {
        if (!CudaEmulation.Active) Assert.Skip("the CUDA emulator is not in use here");
        Assert.Equal(expected.ToString("X8"), CudaEmulation.ConvertToTf32(input).ToString("X8"));
    }

    /// <summary>min.NaN.f32 and max.NaN.f32 per the PTX ISA: NaN on either side gives the canonical NaN; -0 is below +0.</summary>
    [Theory]
    [InlineData(0x3F800000u, 0x40000000u, 0x3F800000u, 0x40000000u)] // 1, 2
    [InlineData(0xBF800000u, 0x3F800000u, 0xBF800000u, 0x3F800000u)] // -1, 1
    [InlineData(0x7FC00000u, 0x3F800000u, 0x7FFFFFFFu, 0x7FFFFFFFu)] // NaN first
    [InlineData(0x3F800000u, 0xFFC00001u, 0x7FFFFFFFu, 0x7FFFFFFFu)] // NaN second, negative, with a payload
    [InlineData(0x80000000u, 0x00000000u, 0x80000000u, 0x00000000u)] // -0, +0
    [InlineData(0x00000000u, 0x80000000u, 0x80000000u, 0x00000000u)] // +0, -0
    [InlineData(0xFF800000u, 0x7F7FFFFFu, 0xFF800000u, 0x7F7FFFFFu)] // -inf, FLT_MAX
    public void Min_and_max_NaN_follow_the_isa(uint a, uint b, uint min, uint max)
    {
        if (!CudaEmulation.Active) Assert.Skip("the CUDA emulator is not in use here");
        Assert.Equal(min.ToString("X8"), CudaEmulation.MinNan(a, b).ToString("X8"));
        Assert.Equal(max.ToString("X8"), CudaEmulation.MaxNan(a, b).ToString("X8"));
    }

    /// <summary>
    /// ex2.approx.ftz.f32: the special values and flushes of the PTX ISA, and the pessimistic error the emulator
    /// answers with (2 ulps off the rounded exact power, up for an odd input's bits and down for an even one), so
    /// that the kernels' suites run against the worst the ISA allows.
    /// </summary>
    [Theory]
    [InlineData(0x00000000u, 0x3F7FFFFEu)] // 2^0: 1, 2 ulps down
    [InlineData(0x3F800000u, 0x3FFFFFFEu)] // 2^1: 2, 2 ulps down
    [InlineData(0xC2FC0000u, 0x00000000u)] // 2^-126, the smallest normal: 2 ulps down is subnormal, flushed to +0
    [InlineData(0x3F800001u, 0x40000003u)] // 2^(1 + 2^-23) = 2.000000165 rounds to 0x40000001: 2 ulps up for odd input bits
    [InlineData(0xFF800000u, 0x00000000u)] // 2^-inf = +0
    [InlineData(0x7F800000u, 0x7F800000u)] // 2^inf = inf
    [InlineData(0x7FC00000u, 0x7FFFFFFFu)] // NaN
    [InlineData(0x00000001u, 0x3F7FFFFEu)] // a subnormal input is flushed to +0 first: 1, 2 ulps down
    [InlineData(0xC3000000u, 0x00000000u)] // 2^-128: a subnormal result, flushed
    public void Ex2_approx_ftz_follows_the_isa_pessimistically(uint input, uint expected)
    {
        if (!CudaEmulation.Active) Assert.Skip("the CUDA emulator is not in use here");
        Assert.Equal(expected.ToString("X8"), CudaEmulation.Ex2ApproxFtz(input).ToString("X8"));
    }

    /// <summary>Over a sweep of the range the softmax uses, the answer stays within the ISA's 2 ulps of the correctly rounded power.</summary>
    [Fact]
    public void Ex2_approx_ftz_stays_within_the_isa_bound()
    {
        if (!CudaEmulation.Active) Assert.Skip("the CUDA emulator is not in use here");
        for (float x = -125f; x <= 127f; x += 0.0137f)
        {
            uint rounded = BitConverter.SingleToUInt32Bits((float)Math.Pow(2, x)), got = CudaEmulation.Ex2ApproxFtz(BitConverter.SingleToUInt32Bits(x));
            Assert.True(Math.Abs((long)got - rounded) <= 2, $"2^{x}: bits {got:X8} against {rounded:X8}");
        }
    }
}
