namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>
/// Coefficients of 2^f on f ∈ [-1/2, 1/2]: a degree-6 polynomial fitted for least maximum relative error (1e-9 before
/// rounding), so evaluated in float by Horner's rule it is within 0.93 ulp of 2^f, where the degree-7 Taylor polynomial
/// it replaced was within 0.86 ulp: the same accuracy for one FMA less, in the softmax's critical loop. Each width's
/// Exp2 splits x = n + f with n = round(x), evaluates this polynomial and scales by 2^n.
/// </summary>
internal static class Exp2Polynomial
{
    public const float C1 = 0.6931471824645996f;
    public const float C2 = 0.24022647738456726f;
    public const float C3 = 0.055503323674201965f;
    public const float C4 = 0.00961843691766262f;
    public const float C5 = 0.0013398868031799793f;
    public const float C6 = 0.0001535334304207936f;

    /// <summary>
    /// Where the exponent-field scale clamps x: n + 127 = 0 is an exponent field of 0, the value exactly 0, so masked
    /// scores of −infinity give exactly 0, as the online softmax requires.
    /// </summary>
    public const float MinExponent = -127f;

    /// <summary>
    /// Where the vscalefps scale (AVX-512) clamps x: 2^-160 is far below the smallest denormal, so p · 2^n rounds to
    /// exactly 0, and results between them come out as the denormals they are.
    /// </summary>
    public const float MinScaledExponent = -160f;
}
