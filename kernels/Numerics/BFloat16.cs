using System.Globalization;
using System.Runtime.CompilerServices;

namespace AttentionEngine;

/// <summary>
/// bfloat16: the upper 16 bits of an IEEE-754 binary32 (1 sign, 8 exponent, 7 mantissa bits).
/// .NET has no such type. Conversions from float round to nearest, ties to even; NaN stays NaN with its sign and
/// its upper payload bits, so every one of the 65,536 bit patterns survives BFloat16 -> float -> BFloat16 unchanged.
/// Arithmetic is done by widening to float (exact), which is also what the kernels do.
/// </summary>
public readonly struct BFloat16 : IEquatable<BFloat16>, IComparable<BFloat16>, IFormattable
{
    private readonly ushort _bits;

    private BFloat16(ushort bits) => _bits = bits;

    /// <summary>The raw bit pattern.</summary>
    public ushort RawValue => _bits;

    /// <summary>Reinterprets a raw bit pattern as a BFloat16.</summary>
    public static BFloat16 FromBits(ushort bits) => new(bits);

    /// <summary>Positive zero.</summary>
    public static BFloat16 Zero => new(0x0000);
    /// <summary>One.</summary>
    public static BFloat16 One => new(0x3F80);
    /// <summary>The canonical quiet NaN.</summary>
    public static BFloat16 NaN => new(0x7FC0);
    /// <summary>+∞.</summary>
    public static BFloat16 PositiveInfinity => new(0x7F80);
    /// <summary>−∞.</summary>
    public static BFloat16 NegativeInfinity => new(0xFF80);
    /// <summary>Largest finite value, about 3.39e38.</summary>
    public static BFloat16 MaxValue => new(0x7F7F);
    /// <summary>Most negative finite value.</summary>
    public static BFloat16 MinValue => new(0xFF7F);
    /// <summary>Smallest positive subnormal, 2^-133.</summary>
    public static BFloat16 Epsilon => new(0x0001);
    /// <summary>Distance from 1 to the next larger value, 2^-7: the unit of relative precision.</summary>
    public const float MachineEpsilon = 0.0078125f;

    /// <summary>True for any NaN pattern.</summary>
    public static bool IsNaN(BFloat16 value) => (value._bits & 0x7FFF) > 0x7F80;
    /// <summary>True for +∞ and −∞.</summary>
    public static bool IsInfinity(BFloat16 value) => (value._bits & 0x7FFF) == 0x7F80;
    /// <summary>True for any value that is neither infinite nor NaN.</summary>
    public static bool IsFinite(BFloat16 value) => (value._bits & 0x7F80) != 0x7F80;

    /// <summary>Exact widening: bfloat16 is a prefix of binary32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static implicit operator float(BFloat16 value) => BitConverter.Int32BitsToSingle(value._bits << 16);

    /// <summary>Exact widening through float.</summary>
    public static implicit operator double(BFloat16 value) => (float)value;

    /// <summary>Round to nearest, ties to even. Overflow rounds to infinity as IEEE-754 requires.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static explicit operator BFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFF) > 0x7F80_0000)
        {
            // NaN: keep sign and upper payload. Truncation could leave an all-zero mantissa (infinity),
            // so force the quiet bit only in that case; other NaNs keep their exact upper bits.
            uint upper = bits >> 16;
            return new BFloat16((ushort)((upper & 0x7F) == 0 ? upper | 0x40 : upper));
        }
        // Adding 0x7FFF plus the lowest kept bit rounds half-way cases toward the even neighbour;
        // a carry out of the mantissa correctly bumps the exponent (and reaches infinity past MaxValue).
        uint roundingBias = 0x7FFFu + ((bits >> 16) & 1u);
        return new BFloat16((ushort)((bits + roundingBias) >> 16));
    }

    /// <summary>
    /// Correctly rounded from double. Narrowing to float first could round twice, so the float step rounds to odd
    /// (truncate, then set the last bit if anything was lost): with 16 spare bits that makes the second rounding exact.
    /// </summary>
    public static explicit operator BFloat16(double value)
    {
        float nearest = (float)value;
        if (float.IsFinite(nearest) && nearest != value)
        {
            uint bits = BitConverter.SingleToUInt32Bits(nearest);
            if (Math.Abs((double)nearest) > Math.Abs(value)) bits -= 1; // step the magnitude back toward zero
            nearest = BitConverter.UInt32BitsToSingle(bits | 1u);
        }
        return (BFloat16)nearest;
    }

    /// <summary>Through float: exact widening, then rounding to Half.</summary>
    public static explicit operator Half(BFloat16 value) => (Half)(float)value;
    /// <summary>Through float: exact widening, then rounding to nearest even bfloat16.</summary>
    public static explicit operator BFloat16(Half value) => (BFloat16)(float)value;

    // IEEE comparison semantics, as float: NaN is unequal to everything, +0 == -0.
    /// <summary>Compares as floats (so +0 == −0 and NaN equals nothing).</summary>
    public static bool operator ==(BFloat16 left, BFloat16 right) => (float)left == (float)right;
    /// <summary>Compares as floats (NaN differs from everything).</summary>
    public static bool operator !=(BFloat16 left, BFloat16 right) => (float)left != (float)right;
    /// <summary>Compares as floats (false when either is NaN).</summary>
    public static bool operator <(BFloat16 left, BFloat16 right) => (float)left < (float)right;
    /// <summary>Compares as floats (false when either is NaN).</summary>
    public static bool operator >(BFloat16 left, BFloat16 right) => (float)left > (float)right;
    /// <summary>Compares as floats (false when either is NaN).</summary>
    public static bool operator <=(BFloat16 left, BFloat16 right) => (float)left <= (float)right;
    /// <summary>Compares as floats (false when either is NaN).</summary>
    public static bool operator >=(BFloat16 left, BFloat16 right) => (float)left >= (float)right;

    /// <summary>As <see cref="float.Equals(float)"/>: NaN equals NaN here so the type works as a dictionary key.</summary>
    public bool Equals(BFloat16 other) => ((float)this).Equals((float)other);
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);
    /// <inheritdoc/>
    public override int GetHashCode() => ((float)this).GetHashCode();
    /// <inheritdoc/>
    public int CompareTo(BFloat16 other) => ((float)this).CompareTo((float)other);

    /// <inheritdoc/>
    public override string ToString() => ((float)this).ToString(CultureInfo.InvariantCulture);
    /// <summary>The value widened to float and formatted as a float.</summary>
    public string ToString(string? format, IFormatProvider? formatProvider) => ((float)this).ToString(format, formatProvider);
}
