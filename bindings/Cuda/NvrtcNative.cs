using System.Runtime.InteropServices;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>NVRTC's C API (nvrtc.h), as the runtime compiler of our CUDA sources. Status 0 is NVRTC_SUCCESS.</summary>
internal static unsafe partial class NvrtcNative
{
    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcVersion(out int major, out int minor);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial nint nvrtcGetErrorString(int result);

    [LibraryImport(NativeLibraries.Nvrtc, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int nvrtcCreateProgram(out nint program, string source, string name, int headerCount, byte** headers, byte** includeNames);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcDestroyProgram(ref nint program);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcCompileProgram(nint program, int optionCount, byte** options);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcGetProgramLogSize(nint program, out nuint size);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcGetProgramLog(nint program, byte* log);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcGetPTXSize(nint program, out nuint size);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcGetPTX(nint program, byte* ptx);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcGetCUBINSize(nint program, out nuint size);

    [LibraryImport(NativeLibraries.Nvrtc)] public static partial int nvrtcGetCUBIN(nint program, byte* cubin);
}
