using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>
/// Finds the CUDA libraries at run time. The [LibraryImport] declarations name "nvrtc" and "cuda"; this resolver maps
/// them to the first installed file: NVRTC 13, 12 or 11.2 (or an unversioned libnvrtc.so), and the driver's libcuda.so.1.
/// A missing library becomes a reason string, never a crash.
/// <para>ATTENTION_ENGINE_CUDA_DRIVER, read once before the first CUDA call, names another driver library to use for our
/// own calls: a driver outside the loader's path, or the CPU emulator the tests use on machines without a GPU.</para>
/// </summary>
internal static class NativeLibraries
{
    public const string Nvrtc = "nvrtc";
    public const string Driver = "cuda";
    public const string DriverVariable = "ATTENTION_ENGINE_CUDA_DRIVER";

    private static readonly string[] NvrtcFiles = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so", "nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"];
    private static readonly string[] DriverFiles = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"];
    private static readonly Lazy<(nint Handle, string? File)> NvrtcHandle = new(() => Load(NvrtcFiles));
    private static readonly string? DriverOverride = Environment.GetEnvironmentVariable(DriverVariable) is { Length: > 0 } path ? path : null;

    private static readonly Lazy<(nint Handle, string? File)> SystemDriverHandle = new(() => Load(DriverFiles));
    private static readonly Lazy<(nint Handle, string? File)> DriverHandle = new(() =>
        DriverOverride is { } path ? Load([path]) : SystemDriverHandle.Value);

    static NativeLibraries() => NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);

    /// <summary>Registers the resolver (idempotent; the static constructor does the work).</summary>
    public static void EnsureResolver() { }

    private static int _fallbackInstalled;

    /// <summary>
    /// Lets other assemblies' imports of the driver by its short names ("cuda", "nvcuda", "libcuda.so": ILGPU's) find
    /// libcuda.so.1, which a driver-only host has without the unversioned link. Always the system's driver, never the
    /// ATTENTION_ENGINE_CUDA_DRIVER override (which serves only the calls these bindings make). Idempotent.
    /// </summary>
    public static void InstallDriverFallback()
    {
        if (Interlocked.Exchange(ref _fallbackInstalled, 1) == 1) return;
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += (_, name) =>
            name is "cuda" or "nvcuda" or "libcuda" or "libcuda.so" ? SystemDriverHandle.Value.Handle : 0;
    }

    /// <summary>The NVRTC file loaded, or null with <paramref name="reason"/> saying what was looked for.</summary>
    public static string? NvrtcFile(out string? reason) => Describe(NvrtcHandle.Value, NvrtcFiles, "NVRTC", out reason);

    /// <summary>The driver file loaded, or null with <paramref name="reason"/>.</summary>
    public static string? DriverFile(out string? reason) =>
        DriverOverride is { } path
            ? Describe(DriverHandle.Value, [path], $"the CUDA driver named by {DriverVariable}", out reason)
            : Describe(DriverHandle.Value, DriverFiles, "the CUDA driver", out reason);

    private static string? Describe((nint Handle, string? File) loaded, string[] files, string what, out string? reason)
    {
        reason = loaded.Handle == 0 ? $"{what} is not installed (looked for {string.Join(", ", files)})" : null;
        return loaded.File;
    }

    private static (nint, string?) Load(string[] files)
    {
        foreach (var file in files)
            if (NativeLibrary.TryLoad(file, out nint handle)) return (handle, file);
        return (0, null);
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) => name switch
    {
        Nvrtc => NvrtcHandle.Value.Handle,
        Driver => DriverHandle.Value.Handle,
        _ => 0,
    };
}
