namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>
/// Coefficients of 2^f = e^(f·ln2) on f ∈ [-1/2, 1/2] (Taylor to degree 7: truncation below 1e-8 relative, so the
/// result is within the rounding of the Horner steps). Each width's Exp2 splits x = n + f with n = round(x), evaluates
/// this polynomial and scales by 2^n through the exponent bits; x is clamped to -127, where 2^n's exponent field is 0
/// and the result is exactly 0 (masked scores of -infinity give exactly 0, as the online softmax requires).
/// </summary>
internal static class Exp2Polynomial
{
    public const float C1 = 0.693147180559945f;
    public const float C2 = 0.240226506959101f;
    public const float C3 = 0.0555041086648216f;
    public const float C4 = 0.00961812910762848f;
    public const float C5 = 0.00133335581464284f;
    public const float C6 = 0.000154035303933816f;
    public const float C7 = 0.0000152527338040598f;
    public const float MinExponent = -127f;
}
