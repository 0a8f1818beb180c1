namespace AttentionEngine.Kernels;

/// <summary>
/// Half storage read as the float 2^-112 times its value (<see cref="ScaledHalf"/>) on the assumption that it is finite,
/// checked on the way: the same 16 bits, through a pointer of this type. Its widening is three operations (<see
/// cref="HalfWidening.WidenScaledFinite(System.Runtime.Intrinsics.Vector512{int})"/>) against a bf16's two: no multiply
/// and no special-value select. An infinity or NaN read this way comes out finite but at least 2^-96 in magnitude, above
/// every finite half (<see cref="FiniteLargest"/>), so a kernel keeps the largest magnitude it loaded (one vrangeps per
/// vector) and does its piece again as <see cref="ScaledHalf"/> when that passes the bound.
/// </summary>
/// <remarks>
/// A one-row decode (multi-head attention, one query) widens each K and V element once and does one FMA with it, so the
/// widening is the work. A scan of each block for specials before the kernels read it made the block a second pass,
/// with the scan taking the cache misses: fp16 decode ran at 1.2-1.5x bf16's time.
/// </remarks>
internal readonly struct ScaledFiniteHalf
{
#pragma warning disable CS0169 // the field gives the type Half's size; it is only ever read by vector loads
    private readonly ushort _bits;
#pragma warning restore CS0169

    /// <summary>The largest finite half (65504) read this way; infinity and NaN read as finite come out at 2^-96 or more.</summary>
    public const float FiniteLargest = 65504f / HalfWidening.Rebias;
}
