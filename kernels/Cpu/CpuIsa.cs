using System.Runtime.Intrinsics;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>The vector width the CPU kernel runs at.</summary>
public enum CpuIsa
{
    /// <summary>The widest this machine accelerates (or the ATTENTION_CPU_ISA environment variable, when set).</summary>
    Auto,
    /// <summary>512-bit vectors (AVX-512).</summary>
    Avx512,
    /// <summary>256-bit vectors (AVX2 + FMA).</summary>
    Avx2,
    /// <summary>128-bit vectors: SSE, NEON, or software where neither exists. Runs everywhere.</summary>
    Vector128,
}

/// <summary>Resolves <see cref="CpuIsa.Auto"/> and checks a forced choice against the hardware.</summary>
internal static class CpuIsaSelection
{
    /// <summary>Environment variable that forces a path for <see cref="CpuIsa.Auto"/> (avx512, avx2, vector128).</summary>
    public const string EnvironmentVariable = "ATTENTION_CPU_ISA";

    public static bool IsSupported(CpuIsa isa) => isa switch
    {
        CpuIsa.Auto or CpuIsa.Vector128 => true,
        CpuIsa.Avx512 => Vector512.IsHardwareAccelerated,
        CpuIsa.Avx2 => Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported,
        _ => false,
    };

    /// <summary>The concrete path for a request.</summary>
    /// <exception cref="NotSupportedException">a forced path this machine cannot run, or an unknown environment value.</exception>
    public static CpuIsa Resolve(CpuIsa requested)
    {
        if (requested == CpuIsa.Auto)
        {
            string? forced = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(forced))
            {
                if (!Enum.TryParse<CpuIsa>(forced, ignoreCase: true, out var parsed) || parsed == CpuIsa.Auto)
                    throw new NotSupportedException($"{EnvironmentVariable}='{forced}' is not one of avx512, avx2, vector128.");
                requested = parsed;
            }
            else
                return IsSupported(CpuIsa.Avx512) ? CpuIsa.Avx512 : IsSupported(CpuIsa.Avx2) ? CpuIsa.Avx2 : CpuIsa.Vector128;
        }
        if (!IsSupported(requested))
            throw new NotSupportedException($"CPU path {requested} is not supported by this machine's instruction set.");
        return requested;
    }
}
