using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;
using AttentionEngine.Native;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The CUDA backend on devices that differ in what a kernel must fit. The emulator offers three (0: sm_80 with 163 KiB
/// of opt-in shared memory per block, 1: sm_86 with 99 KiB, 2: sm_90 with 227 KiB) and refuses a launch that asks
/// for more than its device allows, as a GPU does; the fp32 variants at D ≥ 96 need more than 99 KiB with their
/// default tiles, so on the sm_86 device they run the smaller tiles the host picks. On a GPU machine the tests run on
/// the devices it has and skip the ordinals it lacks. Through the C ABI a kDLCUDA tensor runs on its own device.
/// </summary>
[Collection(nameof(CudaTests))]
public class CudaDeviceFamilyTests
{
    private static void RequireEmulator()
    {
        if (!CudaEmulation.Active) Assert.Skip("the emulated device family (sm_90, sm_86, sm_80) exists only in the CUDA emulator");
        CudaBackendTests.Gpu();
    }

    private static CudaBackend On(int ordinal)
    {
        CudaBackendTests.Gpu();
        if (ordinal >= CudaDriver.DeviceCount) Assert.Skip($"this machine has {CudaDriver.DeviceCount} CUDA device(s); the test needs device {ordinal}");
        var backend = new CudaBackend(ordinal);
        if (!backend.IsAvailable) Assert.Skip($"device {ordinal}: {backend.UnavailableReason}");
        return backend;
    }

    [Fact]
    public void The_emulator_offers_an_sm_80_an_sm_86_and_an_sm_90_device()
    {
        RequireEmulator();
        Assert.Equal(3, CudaDriver.DeviceCount);
        var expected = new[] { ("sm_80", 163), ("sm_86", 99), ("sm_90", 227) };
        for (int ordinal = 0; ordinal < expected.Length; ordinal++)
        {
            using var device = CudaDevice.Open(ordinal);
            Assert.Equal(expected[ordinal].Item1, device.Architecture);
            Assert.Equal(expected[ordinal].Item2 * 1024, device.Attribute(CudaDeviceAttribute.MaxSharedMemoryPerBlockOptin));
            Assert.Contains(expected[ordinal].Item1, device.Name);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaDevice.Open(3));
        using var missing = new CudaBackend(3);
        Assert.False(missing.IsAvailable);
        Assert.Contains("no CUDA device 3", missing.UnavailableReason);
        Assert.Throws<ArgumentOutOfRangeException>(() => new CudaBackend(-1));
    }

    /// <summary>
    /// A CUBIN loads only where its SASS runs, as the driver decides: sm_80 code on the sm_80 and sm_86 devices, sm_86
    /// code not on sm_80 (an older minor) nor sm_90 (another major); so a host that compiles for the wrong device fails
    /// here as it would on the GPU.
    /// </summary>
    [Fact]
    public void A_cubin_loads_only_on_devices_that_run_its_architecture()
    {
        RequireEmulator();
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
        byte[] Cubin(string architecture) => CudaCompileCache.Default.Cubin(CudaKernelSources.StridedCopy, CudaKernelSources.StridedCopyName,
            CudaStridedCopy.CompileOptions(architecture), out _);
        var (sm80, sm86) = (Cubin("sm_80"), Cubin("sm_86"));
        foreach (var (ordinal, image, loads) in new[] { (0, sm80, true), (1, sm80, true), (1, sm86, true), (0, sm86, false), (2, sm86, false), (2, sm80, false) })
        {
            using var device = CudaDevice.Open(ordinal);
            if (loads)
            {
                using var module = CudaModule.Load(image);
                Assert.NotNull(module.Function(CudaStridedCopy.EntryPoint(4)));
            }
            else
            {
                var refused = Assert.Throws<CudaException>(() => CudaModule.Load(image));
                Assert.Contains("CUDA_ERROR_NO_BINARY_FOR_GPU", refused.Message);
            }
        }
    }

    /// <summary>
    /// The sm_86 device refuses to raise a function's shared memory past its 99 KiB (cuFuncSetAttribute), where the
    /// sm_80 device takes 100 KiB, as an RTX 3090 and an A100 do: so the default fp32 D = 128 variant (100 KiB) could not
    /// launch there. The variant the host picks for that device fits and is accepted. (The strided copy stands in for a
    /// kernel in the refusal: the limit is the device's, whatever the function.)
    /// </summary>
    [Fact]
    public void Shared_memory_above_the_devices_limit_is_refused_and_the_hosts_choice_fits()
    {
        RequireEmulator();
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
        var tooLarge = new CudaFlashVariant(128, CudaElement.F32);
        foreach (var (ordinal, accepted) in new[] { (1, false), (0, true) })
        {
            using var device = CudaDevice.Open(ordinal);
            Assert.Equal(accepted, tooLarge.SharedBytes <= device.Attribute(CudaDeviceAttribute.MaxSharedMemoryPerBlockOptin));
            var copy = CudaCompileCache.Default.Cubin(CudaKernelSources.StridedCopy, CudaKernelSources.StridedCopyName,
                CudaStridedCopy.CompileOptions(device.Architecture), out _);
            using var module = CudaModule.Load(copy);
            var function = module.Function(CudaStridedCopy.EntryPoint(4));
            if (accepted) function.SetMaxDynamicSharedMemory(tooLarge.SharedBytes);
            else Assert.Contains("CUDA_ERROR_INVALID_VALUE", Assert.Throws<CudaException>(() => function.SetMaxDynamicSharedMemory(tooLarge.SharedBytes)).Message);
        }

        using var sm86 = CudaDevice.Open(1);
        var chosen = CudaFlashVariant.For(128, CudaElement.F32, sm86.Attribute(CudaDeviceAttribute.MaxSharedMemoryPerBlockOptin));
        Assert.True(chosen.IsReducedTile && chosen.SharedBytes <= 99 * 1024, $"{chosen}: {chosen.SharedBytes} bytes");
        // Through the compile cache the backend uses: the (1, 128, F32) case below then loads this image.
        var image = CudaCompileCache.Default.Cubin(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName, chosen.CompileOptions(sm86.Architecture), out _);
        using var fitting = CudaModule.Load(image);
        fitting.Function(chosen.EntryPoint).SetMaxDynamicSharedMemory(chosen.SharedBytes);
    }

    /// <summary>
    /// The variants where the devices differ, against the oracle: on the sm_86 device the three smaller fp32 tiles and
    /// the f16/bf16 D = 256 variant (exactly 99 KiB); on the sm_90 device the largest default variant (fp32 D = 256 at
    /// 130 KiB). Device 0 (sm_80) runs every variant in CudaBackendTests. Each variant is one NVRTC compile (5-10
    /// s here), so the list is the variants that matter, not all of them.
    /// </summary>
    [Theory]
    [InlineData(1, 96, "F32")]
    [InlineData(1, 128, "F32")]
    [InlineData(1, 200, "F32")]
    [InlineData(1, 256, "F16")]
    [InlineData(1, 200, "BF16")]
    [InlineData(2, 256, "F32")]
    public void The_variant_the_device_gets_matches_the_oracle(int ordinal, int headDim, string elementName)
    {
        using var backend = On(ordinal);
        var element = Enum.Parse<CudaElement>(elementName);
        var spec = new ProblemSpec { Batch = 1, QueryHeads = 2, KvHeads = 1, QueryLength = 70, KeyLength = 90, HeadDim = headDim, ValueDim = headDim, DataSeed = headDim + ordinal };
        if (element == CudaElement.BF16) BackendChecks.CheckDrawnProblem<BFloat16>(backend, spec);
        else if (element == CudaElement.F16) BackendChecks.CheckDrawnProblem<Half>(backend, spec);
        else BackendChecks.CheckDrawnProblem<float>(backend, spec);
    }

    /// <summary>
    /// fp32 on the 99 KiB device over drawn problems with D from 65 to 256, where every tile is a smaller one (8, 16
    /// or 32 keys): every mask kind, GQA, odd lengths and hostile values, against the oracle.
    /// </summary>
    [Fact]
    public void Fp32_with_the_smaller_tiles_matches_the_oracle()
    {
        using var backend = On(1);
        // Lengths and heads kept small: the widened D would otherwise lift the cost far above the emulator's budget.
        var limits = CudaBackendTests.Emulated with { MaxBatch = 1, MaxQueryHeads = 2, MaxLength = 64 };
        var wide = AttentionGen.Problems(limits)
            .Select(spec => spec with { HeadDim = 65 + (spec.DataSeed & 0x7fff) % 192, ValueDim = 65 + ((spec.DataSeed & 0x7fff) / 192) % 192 })
            .ToArbitrary();
        Prop.ForAll(wide, (ProblemSpec spec) => BackendChecks.CheckDrawnProblem<float>(backend, spec))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(CudaEmulation.Active ? 8 : 60));
    }

    /// <summary>
    /// ae_forward on kDLCUDA tensors of device 1 runs them on device 1 (before, every device call went to device 0's
    /// backend and failed), bit for bit what the managed call on a device-1 backend gives; a device index the machine
    /// lacks, or a negative one, is an invalid argument naming it.
    /// </summary>
    [Fact]
    public unsafe void A_c_abi_call_runs_on_the_device_its_tensors_live_on()
    {
        using var backend = On(1);
        using var device = CudaDevice.Open(1);
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 2, 40, 96);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, 2, 50, 96);
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, 2, 50, 96);
        using var dq = DeviceTensor<float>.CopyOf(device, q.AsTensorSpan());
        using var dk = DeviceTensor<float>.CopyOf(device, k.AsTensorSpan());
        using var dv = DeviceTensor<float>.CopyOf(device, v.AsTensorSpan());
        using var managedOut = DeviceTensor<float>.Zeros(device, 1, 2, 40, 96);
        using var abiOut = DeviceTensor<float>.Zeros(device, 1, 2, 40, 96);
        backend.Forward(dq, dk, dv, managedOut, new AttentionOptions { Mask = Mask.Causal() });

        long* layout = stackalloc long[32];
        var tq = Describe(dq, layout);
        var tk = Describe(dk, layout + 8);
        var tv = Describe(dv, layout + 16);
        var to = Describe(abiOut, layout + 24);
        var options = new NativeOptions
        {
            StructSize = (uint)sizeof(NativeOptions), Mask = NativeOptions.MaskCausal, Alignment = 0, WindowLeft = -1, WindowRight = -1,
        };
        delegate* unmanaged<DLTensor*, DLTensor*, DLTensor*, DLTensor*, NativeOptions*, int> forward = &Exports.Forward;
        Assert.Equal(0, forward(&tq, &tk, &tv, &to, &options));
        Assert.Equal(managedOut.ToArray(), abiOut.ToArray());

        foreach (int missing in new[] { CudaDriver.DeviceCount, -1 })
        {
            DLTensor mq = tq, mk = tk, mv = tv, mo = to;
            mq.Device.DeviceId = mk.Device.DeviceId = mv.Device.DeviceId = mo.Device.DeviceId = missing;
            Assert.Equal((int)NativeStatus.InvalidArgument, forward(&mq, &mk, &mv, &mo, &options));
            Assert.Contains(missing < 0 ? "device_id is -1" : $"device {missing}", System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)LastError.Pointer));
        }
    }

    private static unsafe DLTensor Describe(DeviceTensor<float> tensor, long* layout)
    {
        for (int d = 0; d < tensor.Rank; d++) { layout[d] = tensor.Lengths[d]; layout[4 + d] = tensor.Strides[d]; }
        return new DLTensor
        {
            Data = (void*)tensor.Address,
            Device = new DLDevice { DeviceType = DLDeviceType.Cuda, DeviceId = tensor.Device.Ordinal },
            NDim = tensor.Rank,
            DType = new DLDataType { Code = DLDataTypeCode.Float, Bits = 32, Lanes = 1 },
            Shape = layout,
            Strides = layout + 4,
        };
    }
}
