using System.Runtime.InteropServices;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>
/// Whether this machine can run CUDA: the driver library loads, cuInit succeeds and at least one device exists.
/// Probed once; every failure is a reason string (the CUDA backend reports itself unavailable with it), never a crash.
/// </summary>
public static class CudaDriver
{
    private static readonly Lazy<(string? Reason, int Devices, int Version)> Probed = new(Probe);

    static CudaDriver() => NativeLibraries.EnsureResolver();

    /// <summary>Why CUDA cannot be used here, or null when it can.</summary>
    public static string? UnavailableReason => Probed.Value.Reason;

    /// <summary>The number of CUDA devices the driver sees, or 0 when CUDA is unavailable.</summary>
    public static int DeviceCount => Probed.Value.Devices;

    /// <summary>The driver's CUDA version as 1000·major + 10·minor (e.g. 13000), or 0 when unavailable.</summary>
    public static int DriverVersion => Probed.Value.Version;

    private static (string?, int, int) Probe()
    {
        if (NativeLibraries.DriverFile(out string? missing) is null) return (missing, 0, 0);
        int status = CudaDriverNative.cuInit(0);
        if (status != 0) return ($"cuInit failed with {StatusName(status)} ({status})", 0, 0);
        status = CudaDriverNative.cuDriverGetVersion(out int version);
        if (status != 0) return ($"cuDriverGetVersion failed with {StatusName(status)} ({status})", 0, 0);
        status = CudaDriverNative.cuDeviceGetCount(out int count);
        if (status != 0) return ($"cuDeviceGetCount failed with {StatusName(status)} ({status})", 0, version);
        return count == 0 ? ("the CUDA driver found no device", 0, version) : (null, count, version);
    }

    /// <summary>CUDA_ERROR_... for a status, from the driver itself.</summary>
    public static string StatusName(int status) =>
        CudaDriverNative.cuGetErrorName(status, out nint name) == 0 ? Marshal.PtrToStringUTF8(name) ?? $"CUDA status {status}" : $"CUDA status {status}";
}
