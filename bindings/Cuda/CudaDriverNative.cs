using System.Runtime.InteropServices;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>
/// The CUDA driver API (cuda.h, libcuda.so.1) as the CUDA backend uses it: init, devices and attributes, the primary
/// context, streams, events, device and pinned host memory, modules from PTX/CUBIN/fatbin, functions and launch.
/// Versioned names (_v2) are the ones cuda.h maps to. Status 0 is CUDA_SUCCESS; device pointers are 64-bit integers.
/// </summary>
internal static unsafe partial class CudaDriverNative
{
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuInit(uint flags);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuGetErrorName(int status, out nint name);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDeviceTotalMem_v2(out nuint bytes, int device);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuCtxSetCurrent(nint context);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuCtxSynchronize();

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuStreamDestroy_v2(nint stream);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuStreamSynchronize(nint stream);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuEventCreate(out nint @event, uint flags);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuEventRecord(nint @event, nint stream);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuEventSynchronize(nint @event);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuEventDestroy_v2(nint @event);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemAlloc_v2(out ulong devicePointer, nuint bytes);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemFree_v2(ulong devicePointer);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemAllocHost_v2(out nint hostPointer, nuint bytes);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemFreeHost(nint hostPointer);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemcpyHtoD_v2(ulong destination, void* source, nuint bytes);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemcpyDtoH_v2(void* destination, ulong source, nuint bytes);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemcpyHtoDAsync_v2(ulong destination, void* source, nuint bytes, nint stream);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemcpyDtoHAsync_v2(void* destination, ulong source, nuint bytes, nint stream);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuMemsetD8_v2(ulong destination, byte value, nuint count);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuModuleLoadData(out nint module, void* image);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuModuleUnload(nint module);
    [LibraryImport(NativeLibraries.Driver, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int cuModuleGetFunction(out nint function, nint module, string name);

    [LibraryImport(NativeLibraries.Driver)] public static partial int cuFuncGetAttribute(out int value, int attribute, nint function);
    [LibraryImport(NativeLibraries.Driver)] public static partial int cuFuncSetAttribute(nint function, int attribute, int value);

    [LibraryImport(NativeLibraries.Driver)]
    public static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemoryBytes, nint stream, void** parameters, void** extra);
}

/// <summary>The CUdevice_attribute values the backend reads (cuda.h numbering).</summary>
public enum CudaDeviceAttribute
{
    /// <summary>Most threads one block may have.</summary>
    MaxThreadsPerBlock = 1,
    /// <summary>Static shared memory one block may use, in bytes (48 KiB without opt-in).</summary>
    MaxSharedMemoryPerBlock = 8,
    /// <summary>Threads per warp.</summary>
    WarpSize = 10,
    /// <summary>Streaming multiprocessors on the device.</summary>
    MultiprocessorCount = 16,
    /// <summary>Compute capability, major number (9 for Hopper).</summary>
    ComputeCapabilityMajor = 75,
    /// <summary>Compute capability, minor number.</summary>
    ComputeCapabilityMinor = 76,
    /// <summary>Shared memory of one multiprocessor, in bytes.</summary>
    MaxSharedMemoryPerMultiprocessor = 81,
    /// <summary>Shared memory one block may use after opting in, in bytes.</summary>
    MaxSharedMemoryPerBlockOptin = 97,
}

/// <summary>The CUfunction_attribute values the backend reads or sets (cuda.h numbering).</summary>
public enum CudaFunctionAttribute
{
    /// <summary>Most threads a block of this kernel may have (limited by its registers).</summary>
    MaxThreadsPerBlock = 0,
    /// <summary>Static shared memory the kernel declares, in bytes.</summary>
    SharedSizeBytes = 1,
    /// <summary>Registers per thread.</summary>
    NumRegisters = 4,
    /// <summary>Dynamic shared memory a launch may request, in bytes (settable up to the device's opt-in limit).</summary>
    MaxDynamicSharedSizeBytes = 8,
}
