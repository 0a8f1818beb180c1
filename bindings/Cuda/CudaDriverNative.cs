using System.Runtime.InteropServices;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>The CUDA driver API (cuda.h) entry points bound so far. Status 0 is CUDA_SUCCESS.</summary>
internal static partial class CudaDriverNative
{
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuInit(uint flags);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDriverGetVersion(out int version);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDeviceGetCount(out int count);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuGetErrorName(int status, out nint name);
}
