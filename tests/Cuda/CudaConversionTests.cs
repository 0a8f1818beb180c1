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
}
