namespace AttentionEngine;

/// <summary>
/// The engine's defined behaviour at the edge of the fp32 range, one definition for every backend and the Reference:
/// <list type="bullet">
/// <item>scale · (q·k) saturates to [−float.MaxValue, float.MaxValue]: a score that overflows takes part as the largest
/// (or smallest) finite score, so keys whose scores overflow share the weight instead of turning the row into NaN;</item>
/// <item>a score functor's result saturates at +float.MaxValue; −infinity from a functor hides the key, like a mask;</item>
/// <item>a bias of −infinity hides its key whatever the score holds (NaN included); any other bias is added and the
/// sum saturates like the score.</item>
/// </list>
/// NaN stays NaN at every step: garbage in a visible position is never hidden. Outputs are averages of V: every backend
/// keeps them finite for finite V, up to float.MaxValue (sums that would overflow are accumulated at a power-of-two
/// scale). Not defined: q·k whose fp32 partial sums themselves leave the float range (|q_c·k_c| near 1e38 can make
/// ∞ − ∞ inside the dot product), and gradients of calls whose scores saturate or whose V is near the range's edge
/// (the gradients themselves leave the float range); where no score saturates, gradients are those of the formula,
/// saturation treated as the identity.
/// </summary>
public static class ScoreSaturation
{
    /// <summary>Clamps to [−MaxValue, MaxValue]; NaN stays NaN.</summary>
    public static float Saturate(float score) => score > float.MaxValue ? float.MaxValue : score < -float.MaxValue ? -float.MaxValue : score;

    /// <summary>The same in float64 (the Reference's arithmetic), clamped to the float range.</summary>
    public static double Saturate(double score) => score > float.MaxValue ? float.MaxValue : score < -float.MaxValue ? -float.MaxValue : score;

    /// <summary>A score functor's result: +infinity saturates, −infinity (the functor hiding the key) stays.</summary>
    public static float SaturateFunctor(float score) => score > float.MaxValue ? float.MaxValue : score;

    /// <summary>
    /// score + bias, saturated; −infinity when either is −infinity (a −infinity bias hides the key even from a NaN
    /// score, and a functor's −infinity stays hidden whatever the bias).
    /// </summary>
    public static float AddBias(float score, float bias) =>
        float.IsNegativeInfinity(bias) || float.IsNegativeInfinity(score) ? float.NegativeInfinity : Saturate(score + bias);

    /// <summary>The same in float64.</summary>
    public static double AddBias(double score, double bias) =>
        double.IsNegativeInfinity(bias) || double.IsNegativeInfinity(score) ? double.NegativeInfinity : Saturate(score + bias);
}
