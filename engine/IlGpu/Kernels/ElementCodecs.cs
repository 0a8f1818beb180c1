using ILGPU;

namespace AttentionEngine.Kernels.IlGpu;

/// <summary>
/// How a kernel reads and writes one storage element as float. Half and BFloat16 travel to the device as their raw
/// 16 bits (ushort) and are converted with integer arithmetic, so every ILGPU backend (PTX, OpenCL, the CPU
/// simulator) runs the same code without relying on a half type of its own.
/// </summary>
internal interface IElementCodec<TStorage> where TStorage : unmanaged
{
    float Load(TStorage value);
    TStorage Store(float value);
}

/// <summary>float storage: no conversion.</summary>
internal readonly struct FloatCodec : IElementCodec<float>
{
    public float Load(float value) => value;
    public float Store(float value) => value;
}

/// <summary>IEEE binary16 bits; stores round to nearest even, overflow to ±infinity, NaN stays NaN.</summary>
internal readonly struct HalfCodec : IElementCodec<ushort>
{
    public float Load(ushort value) => HalfBits.ToFloat(value);
    public ushort Store(float value) => HalfBits.FromFloat(value);
}

/// <summary>bfloat16 bits (the top half of a float); stores round to nearest even, NaN stays NaN.</summary>
internal readonly struct BFloat16Codec : IElementCodec<ushort>
{
    public float Load(ushort value) => Interop.IntAsFloat((uint)value << 16);

    public ushort Store(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        if ((bits & 0x7fffffffu) > 0x7f800000u) return (ushort)((bits >> 16) | 0x40); // quiet NaN, sign kept
        return (ushort)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
}

/// <summary>binary16 ⇄ float by bit manipulation (device code: no tables, no branches on lookup).</summary>
internal static class HalfBits
{
    public static float ToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint exponent = (uint)(h >> 10) & 0x1f, mantissa = (uint)h & 0x3ff;
        if (exponent == 0)
        {
            // Zero or subnormal: mantissa · 2^-24 is exact in float.
            float magnitude = mantissa * 5.9604644775390625e-8f;
            return Interop.IntAsFloat(Interop.FloatAsInt(magnitude) | sign);
        }
        if (exponent == 31) return Interop.IntAsFloat(sign | 0x7f800000u | (mantissa << 13));
        return Interop.IntAsFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }

    public static ushort FromFloat(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        uint sign = bits & 0x80000000u;
        bits ^= sign;
        uint result;
        if (bits >= 0x47800000u) // ≥ 65536 (or inf/NaN): inf, or a quiet NaN
            result = bits > 0x7f800000u ? 0x7e00u : 0x7c00u;
        else if (bits < 0x38800000u) // below 2^-14: a subnormal half; the float add rounds to nearest even for us
        {
            const uint denormMagic = ((127 - 15) + (23 - 10) + 1) << 23;
            result = Interop.FloatAsInt(Interop.IntAsFloat(bits) + Interop.IntAsFloat(denormMagic)) - denormMagic;
        }
        else
        {
            // Rebias the exponent and round the 13 dropped mantissa bits to nearest even (a carry may reach infinity).
            uint mantissaOdd = (bits >> 13) & 1;
            bits += unchecked((uint)((15 - 127) << 23)) + 0xfffu + mantissaOdd;
            result = bits >> 13;
        }
        return (ushort)(result | (sign >> 16));
    }
}
