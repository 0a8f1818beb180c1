namespace AttentionEngine.Kernels;

/// <summary>
/// Half storage read as the float 2^-112 times its value: the half's bits shifted into float position, without the
/// multiply by 2^112 that rebiases the exponent (<see cref="HalfWidening.WidenScaled(System.Runtime.Intrinsics.Vector512{int})"/>).
/// Every half, subnormals included, is a float exactly this way (2^-112 · 2^-24 is above float's smallest subnormal).
/// The caller puts the 2^112 on the other factor instead, where it is applied once per row or per key rather than once
/// per element: a product of a float scaled by 2^112 and a half scaled by 2^-112 is exactly the product of the
/// unscaled pair, so an FMA over such pairs rounds to the same bits as over the plain ones. That holds while the scaled
/// factor stays finite (<see cref="Fits"/>).
/// </summary>
internal readonly struct ScaledHalf
{
#pragma warning disable CS0169 // the field gives the type Half's size; it is only ever read by vector loads
    private readonly ushort _bits;
#pragma warning restore CS0169

    /// <summary>The factor the other operand takes: 2^112.</summary>
    public const float Factor = HalfWidening.Rebias;

    /// <summary>
    /// Whether a factor of magnitude at most <paramref name="largestMagnitude"/> can take <see cref="Factor"/> exactly:
    /// below 2^16, so the scaled value stays under float's largest (2^128); NaN or infinity never.
    /// </summary>
    public static bool Fits(float largestMagnitude) => largestMagnitude < 65536f;
}
