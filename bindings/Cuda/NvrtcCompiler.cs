using System.Runtime.InteropServices;
using System.Text;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>What one NVRTC compilation produced: PTX always, a CUBIN when compiled for a real architecture (sm_XX).</summary>
public sealed record NvrtcOutput(string Ptx, byte[]? Cubin, string Log);

/// <summary>
/// Compiles CUDA C++ source at run time with NVRTC (the CUDA backend's kernels, and CI's compile checks of every kernel
/// variant on machines without a GPU). Safe to use from several threads: each compilation owns its program.
/// </summary>
public static unsafe class NvrtcCompiler
{
    static NvrtcCompiler() => NativeLibraries.EnsureResolver();

    /// <summary>Why NVRTC cannot be used here, or null when it can.</summary>
    public static string? UnavailableReason
    {
        get
        {
            NativeLibraries.NvrtcFile(out string? reason);
            return reason;
        }
    }

    /// <summary>The library file in use (for reports), or null.</summary>
    public static string? LibraryFile => NativeLibraries.NvrtcFile(out _);

    /// <summary>NVRTC's version.</summary>
    /// <exception cref="InvalidOperationException">NVRTC is not installed.</exception>
    public static Version Version
    {
        get
        {
            ThrowIfUnavailable();
            Check(NvrtcNative.nvrtcVersion(out int major, out int minor), "nvrtcVersion");
            return new Version(major, minor);
        }
    }

    /// <summary>Compiles <paramref name="source"/>; options as nvcc spells them, e.g. "--gpu-architecture=sm_90", "-DHEAD_DIM=128".</summary>
    /// <exception cref="NvrtcException">the source does not compile (the message holds the compiler log) or a call failed.</exception>
    /// <exception cref="InvalidOperationException">NVRTC is not installed.</exception>
    public static NvrtcOutput Compile(string source, string name, IReadOnlyList<string> options)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(options);
        ThrowIfUnavailable();
        Check(NvrtcNative.nvrtcCreateProgram(out nint raw, source, name, 0, null, null), "nvrtcCreateProgram");
        using var program = NvrtcProgramHandle.Of(raw);

        var encoded = options.Select(o => Marshal.StringToCoTaskMemUTF8(o)).ToArray();
        int status;
        try
        {
            fixed (nint* pointers = encoded) status = NvrtcNative.nvrtcCompileProgram(program.Value, encoded.Length, (byte**)pointers);
        }
        finally
        {
            foreach (var pointer in encoded) Marshal.FreeCoTaskMem(pointer);
        }
        string log = ReadLog(program.Value);
        if (status != 0) throw Failure("nvrtcCompileProgram", status, $"{name} with [{string.Join(" ", options)}]\n{log}");

        Check(NvrtcNative.nvrtcGetPTXSize(program.Value, out nuint ptxSize), "nvrtcGetPTXSize");
        var ptx = new byte[(int)ptxSize];
        fixed (byte* buffer = ptx) Check(NvrtcNative.nvrtcGetPTX(program.Value, buffer), "nvrtcGetPTX");

        byte[]? cubin = null;
        if (NvrtcNative.nvrtcGetCUBINSize(program.Value, out nuint cubinSize) == 0 && cubinSize > 0)
        {
            cubin = new byte[(int)cubinSize];
            fixed (byte* buffer = cubin) Check(NvrtcNative.nvrtcGetCUBIN(program.Value, buffer), "nvrtcGetCUBIN");
        }
        return new NvrtcOutput(Encoding.UTF8.GetString(ptx).TrimEnd('\0'), cubin, log);
    }

    private static string ReadLog(nint program)
    {
        if (NvrtcNative.nvrtcGetProgramLogSize(program, out nuint size) != 0 || size <= 1) return "";
        var log = new byte[(int)size];
        fixed (byte* buffer = log)
            if (NvrtcNative.nvrtcGetProgramLog(program, buffer) != 0) return "";
        return Encoding.UTF8.GetString(log).TrimEnd('\0');
    }

    private static void ThrowIfUnavailable()
    {
        if (UnavailableReason is { } reason) throw new InvalidOperationException($"NVRTC cannot be used: {reason}.");
    }

    private static void Check(int status, string call)
    {
        if (status != 0) throw Failure(call, status, null);
    }

    private static NvrtcException Failure(string call, int status, string? log) =>
        new(call, status, Marshal.PtrToStringUTF8(NvrtcNative.nvrtcGetErrorString(status)) ?? "NVRTC_ERROR_UNKNOWN", log);
}
