using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// What only the CUDA emulator can show without a GPU: the backend frees every device allocation on every path, and
/// a kernel that touches memory outside every allocation fails as a GPU would (CUDA_ERROR_ILLEGAL_ADDRESS, named with
/// the call) instead of corrupting memory; device memory and the guards around every allocation read as NaN, and a
/// write into a guard fails the launch. Skips where the emulator is not in use (a GPU machine, or no g++).
/// </summary>
[Collection(nameof(CudaTests))]
public class CudaEmulatorTests
{
    private static void RequireEmulator()
    {
        if (!CudaEmulation.Active) Assert.Skip($"the CUDA emulator is not in use ({(File.Exists(CudaEmulation.LibraryPath) ? "a CUDA driver is installed" : "it was not built: see the build output")})");
    }

    [Fact]
    public void Every_device_allocation_is_freed_on_success_and_on_failure()
    {
        RequireEmulator();
        var backend = CudaBackendTests.Gpu();
        long baseline = CudaEmulation.LiveAllocations;
        foreach (var spec in AttentionGen.Sample(4, seed: 41, new ProblemLimits { MaxLength = 90, MaxCost = 1e6 }))
        {
            using var problem = AttentionProblem<Half>.Create(spec);
            problem.Run(backend);
            Assert.Equal(baseline, CudaEmulation.LiveAllocations);
        }
        using (var tooWide = AttentionProblem<Half>.Create(new ProblemSpec { QueryLength = 3, KeyLength = 3, HeadDim = 300, ValueDim = 4 }))
            Assert.Throws<NotSupportedException>(() => tooWide.Run(backend));
        Assert.Equal(baseline, CudaEmulation.LiveAllocations);
    }

    [Fact]
    public unsafe void A_kernel_reading_outside_its_buffers_fails_with_the_drivers_status_and_the_call()
    {
        RequireEmulator();
        CudaBackendTests.Gpu();
        using var device = CudaDevice.Open(0);
        var variant = new CudaFlashVariant(128, CudaElement.F16); // 87 KiB of shared memory: above the default 48
        var image = CudaCompileCache.Default.Cubin(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName, variant.CompileOptions(device.Architecture), out _);
        using var module = CudaModule.Load(image);
        var function = module.Function(variant.EntryPoint);
        function.SetMaxDynamicSharedMemory(variant.SharedBytes);
        using var rows = DeviceMemory.Allocate(64 * 128 * 2);
        using var lse = DeviceMemory.Allocate(64 * 4);
        var p = new FlashParams
        {
            Q = rows.Address, K = rows.Address + (1ul << 40), V = rows.Address, O = rows.Address, Lse = lse.Address,
            QStrides = new(64 * 128, 64 * 128, 128), KStrides = new(64 * 128, 64 * 128, 128), VStrides = new(64 * 128, 64 * 128, 128),
            OStrides = new(64 * 128, 64 * 128, 128), LseStrides = new(64, 64, 1),
            BandLo = long.MinValue / 2, BandHi = long.MaxValue / 2, Batch = 1, Heads = 1, KvHeads = 1, Lq = 64, Lk = 64, Scale = 0.125f,
        };
        using var stream = CudaStream.Create();
        var error = Assert.Throws<CudaException>(() => Launch(function, variant, stream, p));
        Assert.Contains("CUDA_ERROR_ILLEGAL_ADDRESS", error.Message);
        Assert.Contains(variant.EntryPoint, error.Message);
        Assert.Contains("outside every device allocation", CudaEmulation.LastLaunchError);

        // The same launch without the raised shared-memory limit is refused, as cuLaunchKernel refuses it on a GPU.
        using var fresh = CudaModule.Load(image);
        p.K = rows.Address;
        var refused = Assert.Throws<CudaException>(() => Launch(fresh.Function(variant.EntryPoint), variant, stream, p));
        Assert.Contains("CUDA_ERROR_INVALID_VALUE", refused.Message);
    }

    [Fact]
    public unsafe void Device_memory_starts_as_nan_and_a_write_into_a_guard_fails_the_launch()
    {
        RequireEmulator();
        CudaBackendTests.Gpu();
        using var device = CudaDevice.Open(0);
        var variant = new CudaFlashVariant(32, CudaElement.F16);
        var image = CudaCompileCache.Default.Cubin(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName, variant.CompileOptions(device.Architecture), out _);
        using var module = CudaModule.Load(image);
        var function = module.Function(variant.EntryPoint);
        function.SetMaxDynamicSharedMemory(variant.SharedBytes);
        const int rowBytes = 64 * 32 * 2;
        using var rows = DeviceMemory.Allocate(rowBytes);
        using var output = DeviceMemory.Allocate(rowBytes);
        using var lse = DeviceMemory.Allocate(64 * 4);
        // In the emulator a device address is a host address: never-written memory, and the bytes on either side of an
        // allocation, read as NaN in every element type (a stray read shows in the results).
        byte* at = (byte*)rows.Address;
        for (int offset = -256; offset < rowBytes + 256; offset += 2)
            Assert.True(Half.IsNaN(*(Half*)(at + offset)) && BFloat16.IsNaN(*(BFloat16*)(at + offset)), $"offset {offset}");
        for (int offset = -256; offset < rowBytes + 256; offset += 4) Assert.True(float.IsNaN(*(float*)(at + offset)), $"offset {offset}");

        var p = new FlashParams
        {
            Q = rows.Address, K = rows.Address, V = rows.Address, O = output.Address, Lse = lse.Address,
            QStrides = new(64 * 32, 64 * 32, 32), KStrides = new(64 * 32, 64 * 32, 32), VStrides = new(64 * 32, 64 * 32, 32),
            OStrides = new(64 * 32, 64 * 32, 32), LseStrides = new(64, 64, 1),
            BandLo = long.MinValue / 2, BandHi = long.MaxValue / 2, Batch = 1, Heads = 1, KvHeads = 1, Lq = 64, Lk = 64, Scale = 0.125f,
        };
        using var stream = CudaStream.Create();
        new Span<byte>(at, rowBytes).Clear();
        Launch(function, variant, stream, p); // clean: runs

        byte saved = at[rowBytes + 3];
        at[rowBytes + 3] = 0; // what an unchecked store one element past the end would do
        try
        {
            var error = Assert.Throws<CudaException>(() => Launch(function, variant, stream, p));
            Assert.Contains("CUDA_ERROR_ILLEGAL_ADDRESS", error.Message);
            Assert.Contains($"past the end of the {rowBytes}-byte device allocation", CudaEmulation.LastLaunchError);
        }
        finally
        {
            at[rowBytes + 3] = saved;
        }
        saved = at[-1];
        at[-1] = 0;
        try
        {
            Assert.Throws<CudaException>(() => Launch(function, variant, stream, p));
            Assert.Contains($"before the start of the {rowBytes}-byte device allocation", CudaEmulation.LastLaunchError);
        }
        finally
        {
            at[-1] = saved;
        }
        Launch(function, variant, stream, p); // guards restored: runs again
    }

    [Fact]
    public void The_kernels_hold_when_copies_land_at_issue_and_the_thread_order_changes()
    {
        // A new seed every run (logged on failure), as FsCheck draws new problems every run.
        uint seed = (uint)Random.Shared.Next(1, int.MaxValue);
        // By default a cp.async lands at its thread's wait and threads run in index order between barriers, which can
        // hide a copy into a buffer other warps still read (a missing __syncthreads before a refill) or a race that
        // one order happens to win. Eager copies and rotated, reversed orders show them: without the barrier after
        // a tile's last read of its K/V buffer, these cases fail (checked), while the default mode passes them.
        RequireEmulator();
        var backend = CudaBackendTests.Gpu();
        CudaEmulation.SetModes(eagerCopies: true, seed);
        try
        {
            foreach (var spec in AttentionGen.Sample(6, seed: seed, CudaBackendTests.Emulated)) CheckWithSeed<Half>(backend, spec, seed);
            foreach (var spec in AttentionGen.Sample(3, seed: seed + 1, CudaBackendTests.Emulated)) CheckWithSeed<float>(backend, spec, seed);
        }
        finally
        {
            CudaEmulation.SetModes(false, 0);
        }
    }

    private static void CheckWithSeed<T>(AttentionBackend backend, ProblemSpec spec, uint seed) where T : unmanaged
    {
        try
        {
            BackendChecks.CheckDrawnProblem<T>(backend, spec);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"schedule seed {seed} (eager copies): {e.Message}", e);
        }
    }

    [Fact]
    public void Fp32_as_3xtf32_passes_the_rule_when_tensor_cores_truncate_their_sums()
    {
        // The default model sums each mma's products exactly and rounds once; tensor cores align to the largest exponent
        // and truncate. The fp32 (3xTF32) kernel must hold the fp32 tolerance rule under the pessimistic model too.
        RequireEmulator();
        var backend = CudaBackendTests.Gpu();
        CudaEmulation.SetModes(eagerCopies: false, scheduleSeed: 0, truncatedAccumulation: true);
        try
        {
            foreach (var spec in AttentionGen.Sample(9, seed: 97, CudaBackendTests.Emulated)) BackendChecks.CheckDrawnProblem<float>(backend, spec);
            foreach (var spec in AttentionGen.Sample(4, seed: 98, CudaBackendTests.Emulated)) BackendChecks.CheckDrawnProblem<Half>(backend, spec);
        }
        finally
        {
            CudaEmulation.SetModes(false, 0);
        }
    }

    private static unsafe void Launch(CudaFunction function, CudaFlashVariant variant, CudaStream stream, FlashParams p)
    {
        void* argument = &p;
        function.Launch((1, 1, 1), (128, 1, 1), (uint)variant.SharedBytes, stream, &argument);
    }
}
