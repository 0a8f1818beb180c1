using AttentionEngine.Bindings.Cuda;


namespace AttentionEngine.Tests;

/// <summary>
/// Our NVRTC bindings, on machines without a GPU: compile CUDA C++ (with the inline-PTX tensor-core instructions the
/// CUDA kernels use) for sm_80 and sm_90, and report compile errors with the compiler's log. Skips, with the reason,
/// where NVRTC is not installed (CI installs it; DEVELOPERS.md shows how).
/// </summary>
public class NvrtcCompilerTests
{
    // One warp: ldmatrix loads A (16x16 fp16) and B (16x8) fragments from shared memory, one m16n8k16 mma accumulates in fp32.
    private const string MmaProbe = """
        extern "C" __global__ void mma_probe(const unsigned short* a, const unsigned short* b, float* c)
        {
            __shared__ __align__(16) unsigned short sa[16 * 16];
            __shared__ __align__(16) unsigned short sb[16 * 8];
            int lane = threadIdx.x;
            for (int n = lane; n < 256; n += 32) sa[n] = a[n];
            for (int n = lane; n < 128; n += 32) sb[n] = b[n];
            __syncwarp();
            unsigned a0, a1, a2, a3, b0, b1;
            unsigned aAddress = (unsigned)__cvta_generic_to_shared(&sa[(lane % 16) * 16 + (lane / 16) * 8]);
            unsigned bAddress = (unsigned)__cvta_generic_to_shared(&sb[(lane % 16) * 8]);
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                         : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3) : "r"(aAddress));
            asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                         : "=r"(b0), "=r"(b1) : "r"(bAddress));
            float d0 = 0, d1 = 0, d2 = 0, d3 = 0;
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                         : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                         : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
            c[lane * 4 + 0] = d0; c[lane * 4 + 1] = d1; c[lane * 4 + 2] = d2; c[lane * 4 + 3] = d3;
        }
        """;

    private static void SkipWithoutNvrtc()
    {
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
    }

    [Theory]
    [InlineData("sm_80")]
    [InlineData("sm_90")]
    public void Tensor_core_source_compiles_to_ptx_and_cubin(string architecture)
    {
        SkipWithoutNvrtc();
        var output = NvrtcCompiler.Compile(MmaProbe, "mma_probe.cu", [$"--gpu-architecture={architecture}", "-std=c++17"]);
        Assert.Contains($".target {architecture}", output.Ptx);
        Assert.Contains(".entry mma_probe", output.Ptx);
        Assert.Contains("mma.sync.aligned.m16n8k16", output.Ptx);
        Assert.NotNull(output.Cubin);
        Assert.True(output.Cubin!.Length > 0);
        Assert.True(NvrtcCompiler.Version.Major >= 11);
    }

    [Fact]
    public void A_compile_error_carries_the_call_status_and_log()
    {
        SkipWithoutNvrtc();
        var e = Assert.Throws<NvrtcException>(() =>
            NvrtcCompiler.Compile("extern \"C\" __global__ void broken() { undeclared_name = 1; }", "broken.cu", ["--gpu-architecture=compute_80"]));
        Assert.Equal("nvrtcCompileProgram", e.Call);
        Assert.Equal("NVRTC_ERROR_COMPILATION", e.StatusName);
        Assert.Contains("undeclared_name", e.Message);
        Assert.Contains("broken.cu", e.Message);
    }
}

public class CudaDriverTests
{
    [Fact]
    public void Without_a_driver_or_device_cuda_is_unavailable_with_a_reason_not_a_crash()
    {
        string? reason = CudaDriver.UnavailableReason;
        if (reason is null)
        {
            Assert.True(CudaDriver.DeviceCount > 0);
            Assert.True(CudaDriver.DriverVersion >= 11000);
            return;
        }
        Assert.True(reason.Contains("libcuda", StringComparison.Ordinal) || reason.Contains("cu", StringComparison.Ordinal), reason);
        Assert.Equal(0, CudaDriver.DeviceCount);
    }
}

/// <summary>The bindings end to end on a GPU (skips without one): NVRTC → module → launch → copy back.</summary>
public class CudaRoundTripTests
{
    [Fact]
    public unsafe void A_tensor_core_mma_compiled_at_run_time_computes_a_16x16_by_16x8_product()
    {
        if (CudaDriver.UnavailableReason is { } reason) Assert.Skip(reason);
        if (NvrtcCompiler.UnavailableReason is { } noNvrtc) Assert.Skip(noNvrtc);
        // The probe checks the hardware's fragment layout against the PTX ISA; the emulator implements that same text
        // and runs only the kernels compiled into it.
        if (CudaEmulation.Active) Assert.Skip("a GPU check: CUDA calls go to the emulator here");
        using var device = CudaDevice.Open();
        var source = typeof(NvrtcCompilerTests).GetField("MmaProbe", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.GetRawConstantValue() as string;
        var compiled = NvrtcCompiler.Compile(source!, "mma_probe.cu", [$"--gpu-architecture={device.Architecture}"]);
        using var module = CudaModule.Load(compiled.Cubin ?? System.Text.Encoding.UTF8.GetBytes(compiled.Ptx));
        var kernel = module.Function("mma_probe");

        // Small integers: exact in fp16 and in the fp32 accumulator.
        var a = new ushort[16 * 16];
        var b = new ushort[16 * 8];
        for (int n = 0; n < a.Length; n++) a[n] = BitConverter.HalfToUInt16Bits((Half)(n % 7 - 3));
        for (int n = 0; n < b.Length; n++) b[n] = BitConverter.HalfToUInt16Bits((Half)(n % 5 - 2));
        using var da = DeviceMemory.Allocate((nuint)(a.Length * 2));
        using var db = DeviceMemory.Allocate((nuint)(b.Length * 2));
        using var dc = DeviceMemory.Allocate(32 * 4 * sizeof(float));
        da.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()));
        db.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(b.AsSpan()));
        using var stream = CudaStream.Create();
        ulong pa = da.Address, pb = db.Address, pc = dc.Address;
        void** arguments = stackalloc void*[] { &pa, &pb, &pc };
        kernel.Launch((1, 1, 1), (32, 1, 1), 0, stream, arguments);
        stream.Synchronize();
        var c = new float[128];
        dc.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(c.AsSpan()));

        for (int lane = 0; lane < 32; lane++)
        for (int e = 0; e < 4; e++)
        {
            // m16n8k16 accumulator layout: d0,d1 at row lane/4, d2,d3 at row lane/4 + 8; columns (lane % 4)·2 + (e % 2).
            int row = lane / 4 + (e >= 2 ? 8 : 0), col = lane % 4 * 2 + e % 2;
            float expected = 0;
            for (int k = 0; k < 16; k++) expected += (float)BitConverter.UInt16BitsToHalf(a[row * 16 + k]) * (float)BitConverter.UInt16BitsToHalf(b[k * 8 + col]);
            Assert.Equal(expected, c[lane * 4 + e]);
        }
    }
}
