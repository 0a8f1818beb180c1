using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine.Tests;

/// <summary>
/// Where no CUDA driver is installed, points the CUDA bindings at the emulator this project builds
/// (tests/CudaEmulator: our kernels compiled for the CPU, with every warp operation executed lane by lane as the PTX
/// ISA defines it, behind a stand-in for libcuda.so.1). The CUDA backend's tests then run everywhere: on a GPU machine
/// against the GPU, elsewhere against the emulator. Runs once, when the test assembly loads, before any CUDA call.
/// An ATTENTION_ENGINE_CUDA_DRIVER set by the caller is left alone.
/// </summary>
public static unsafe class CudaEmulation
{
    private static nint _library;

    /// <summary>True when this process's CUDA calls go to the emulator.</summary>
    public static bool Active { get; private set; }

    /// <summary>The emulator's library file (whether or not it was built).</summary>
    public static string LibraryPath => Path.Combine(AppContext.BaseDirectory, "cuda-emulator", "libcuda-emulator.so");

#pragma warning disable CA2255 // a test executable's own start-up hook: it must run before any test touches CUDA
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void UseTheEmulatorWhereThereIsNoDriver()
    {
        if (Environment.GetEnvironmentVariable(NativeLibraries.DriverVariable) is { Length: > 0 } chosen)
        {
            Active = Path.GetFullPath(chosen) == Path.GetFullPath(LibraryPath);
        }
        else
        {
            if (NativeLibrary.TryLoad("libcuda.so.1", out nint driver))
            {
                NativeLibrary.Free(driver);
                return;
            }
            if (!File.Exists(LibraryPath)) return;
            Environment.SetEnvironmentVariable(NativeLibraries.DriverVariable, LibraryPath);
            Active = true;
        }
        if (Active) _library = NativeLibrary.Load(LibraryPath);
    }

    /// <summary>Device allocations the emulator holds now (leak checks).</summary>
    public static long LiveAllocations => Call<long>("ae_emu_live_allocations");

    /// <summary>Kernel launches so far.</summary>
    public static long Launches => Call<long>("ae_emu_launches");

    /// <summary>What the last launch did wrong in the emulator's eyes (an address outside every allocation, ...), or "".</summary>
    public static string LastLaunchError =>
        Marshal.PtrToStringUTF8(((delegate* unmanaged<nint>)NativeLibrary.GetExport(Library, "ae_emu_last_launch_error"))()) ?? "";

    /// <summary>
    /// Makes the emulator a harder judge for the launches that follow: cp.async copies landing at issue (instead of at
    /// the issuing thread's wait) and, with a nonzero seed, a different order of a block's threads between barriers in
    /// every round; with <paramref name="truncatedAccumulation"/>, mma sums aligned to the largest exponent and truncated
    /// (a pessimistic model of tensor cores) instead of exact. <c>SetModes(false, 0)</c> restores the defaults.
    /// </summary>
    public static void SetModes(bool eagerCopies, uint scheduleSeed, bool truncatedAccumulation = false) =>
        ((delegate* unmanaged<int, uint, int, void>)NativeLibrary.GetExport(Library, "ae_emu_set_modes"))(
            eagerCopies ? 1 : 0, scheduleSeed, truncatedAccumulation ? 1 : 0);

    /// <summary>The bits the emulator's cvt.rna.tf32.f32 gives for a float's bits.</summary>
    public static uint ConvertToTf32(uint bits) =>
        ((delegate* unmanaged<uint, uint>)NativeLibrary.GetExport(Library, "ae_emu_cvt_rna_tf32"))(bits);

    /// <summary>The bits the emulator's min.NaN.f32 gives for two floats' bits.</summary>
    public static uint MinNan(uint a, uint b) =>
        ((delegate* unmanaged<uint, uint, uint>)NativeLibrary.GetExport(Library, "ae_emu_min_nan"))(a, b);

    /// <summary>The bits the emulator's max.NaN.f32 gives for two floats' bits.</summary>
    public static uint MaxNan(uint a, uint b) =>
        ((delegate* unmanaged<uint, uint, uint>)NativeLibrary.GetExport(Library, "ae_emu_max_nan"))(a, b);

    /// <summary>The bits the emulator's ex2.approx.ftz.f32 gives for a float's bits.</summary>
    public static uint Ex2ApproxFtz(uint bits) =>
        ((delegate* unmanaged<uint, uint>)NativeLibrary.GetExport(Library, "ae_emu_ex2_approx_ftz"))(bits);

    /// <summary>The emulator's place of element (row, column) of a warp operand: lane, 32-bit register, 16-bit half.</summary>
    /// <param name="fragment">0 mma f16/bf16 A, 1 its B, 2 the f32 accumulator, 3 mma tf32 A, 4 its B, 5 ldmatrix x4, 6 ldmatrix x4.trans</param>
    public static (int Lane, int Register, int Half) FragmentPlace(int fragment, int row, int column)
    {
        int lane, register, half;
        ((delegate* unmanaged<int, int, int, int*, int*, int*, void>)NativeLibrary.GetExport(Library, "ae_emu_fragment_place"))(
            fragment, row, column, &lane, &register, &half);
        return (lane, register, half);
    }

    private static T Call<T>(string name) where T : unmanaged => ((delegate* unmanaged<T>)NativeLibrary.GetExport(Library, name))();

    private static nint Library => Active ? _library : throw new InvalidOperationException("The CUDA emulator is not in use in this process.");
}
