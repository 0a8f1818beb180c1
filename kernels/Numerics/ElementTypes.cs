using System.Runtime.CompilerServices;

namespace AttentionEngine;

/// <summary>
/// The storage element types attention runs on (float, <see cref="Half"/>, <see cref="BFloat16"/>) and their
/// conversions. Each method branches on <c>typeof(T)</c>, which the JIT folds per instantiation, so the kernels pay
/// nothing for being generic.
/// </summary>
public static class ElementTypes
{
    /// <summary>True for float, Half and BFloat16.</summary>
    public static bool IsSupported<T>() =>
        typeof(T) == typeof(float) || typeof(T) == typeof(Half) || typeof(T) == typeof(BFloat16);

    /// <summary>Throws <see cref="NotSupportedException"/> naming the type when it is not a storage type.</summary>
    public static void ThrowIfUnsupported<T>()
    {
        if (!IsSupported<T>())
            throw new NotSupportedException(
                $"Element type {typeof(T).Name} is not supported; attention runs on float, System.Half and AttentionEngine.BFloat16.");
    }

    /// <summary>Short name used in reports: f32, f16, bf16.</summary>
    public static string ShortName<T>() =>
        typeof(T) == typeof(float) ? "f32" : typeof(T) == typeof(Half) ? "f16" : typeof(T) == typeof(BFloat16) ? "bf16" : typeof(T).Name;

    /// <summary>Distance from 1 to the next representable value: the unit of relative precision of the storage type.</summary>
    public static double MachineEpsilon<T>()
    {
        if (typeof(T) == typeof(float)) return Math.ScaleB(1.0, -23);
        if (typeof(T) == typeof(Half)) return Math.ScaleB(1.0, -10);
        if (typeof(T) == typeof(BFloat16)) return Math.ScaleB(1.0, -7);
        ThrowIfUnsupported<T>();
        return 0;
    }

    /// <summary>Largest finite value of the storage type.</summary>
    public static double MaxFinite<T>()
    {
        if (typeof(T) == typeof(float)) return float.MaxValue;
        if (typeof(T) == typeof(Half)) return (double)Half.MaxValue;
        if (typeof(T) == typeof(BFloat16)) return BFloat16.MaxValue;
        ThrowIfUnsupported<T>();
        return 0;
    }

    /// <summary>Exact widening to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle<T>(T value)
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<T, float>(ref value);
        if (typeof(T) == typeof(Half)) return (float)Unsafe.As<T, Half>(ref value);
        if (typeof(T) == typeof(BFloat16)) return Unsafe.As<T, BFloat16>(ref value);
        ThrowIfUnsupported<T>();
        return 0;
    }

    /// <summary>Exact widening to double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double ToDouble<T>(T value) => ToSingle(value);

    /// <summary>Round to nearest even from float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T FromSingle<T>(float value)
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<float, T>(ref value);
        if (typeof(T) == typeof(Half)) { var h = (Half)value; return Unsafe.As<Half, T>(ref h); }
        if (typeof(T) == typeof(BFloat16)) { var b = (BFloat16)value; return Unsafe.As<BFloat16, T>(ref b); }
        ThrowIfUnsupported<T>();
        return default!;
    }

    /// <summary>Round to nearest even from double, rounding once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T FromDouble<T>(double value)
    {
        if (typeof(T) == typeof(float)) { var f = (float)value; return Unsafe.As<float, T>(ref f); }
        if (typeof(T) == typeof(Half)) { var h = (Half)value; return Unsafe.As<Half, T>(ref h); }
        if (typeof(T) == typeof(BFloat16)) { var b = (BFloat16)value; return Unsafe.As<BFloat16, T>(ref b); }
        ThrowIfUnsupported<T>();
        return default!;
    }

    /// <summary>Rounds a double to the nearest value of the storage type and widens it back: "what T can hold".</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double RoundTo<T>(double value) => ToDouble(FromDouble<T>(value));
}
