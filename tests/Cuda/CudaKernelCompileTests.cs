using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine.Tests;

/// <summary>
/// Every variant of the CUDA flash kernel (each native D, fp16, bf16 and fp32, and the smaller K/V tiles of 99 KiB
/// devices) compiles through NVRTC for the devices that run it on machines without a GPU, with the tensor-core, ldmatrix
/// and cp.async instructions in its PTX; every device family gets a variant that fits its shared memory; and the on-disk
/// compile cache keys images by source, options and architecture. Skips with the reason where NVRTC is missing.
/// </summary>
public class CudaKernelCompileTests
{
    // The element travels by name: CudaElement is internal to the engine, and theory parameters must be public types.
    public static TheoryData<int, string, int, string> Variants()
    {
        var data = new TheoryData<int, string, int, string>();
        // Every default-tile variant for sm_90, the emulated device, so these compiles are the ones the emulated suites
        // load from the cache (each compile takes 5-10 s here, and NVRTC's share of the suite's ten minutes is large);
        // the smaller tiles for sm_86, the devices that run them; for sm_80 the widest fp32 variant (the most registers
        // and shared memory). `bench cuda-resources` reports every variant for any architecture.
        int widest = CudaFlashVariant.All.Max(v => v.HeadDim);
        foreach (var variant in CudaFlashVariant.All)
        foreach (var architecture in variant.IsReducedTile ? ["sm_86"]
                     : variant.HeadDim == widest && variant.Element == CudaElement.F32 ? new[] { "sm_90", "sm_80" } : ["sm_90"])
            data.Add(variant.HeadDim, variant.Element.ToString(), variant.KeysPerTile, architecture);
        return data;
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Flash_forward_compiles_for_every_variant(int headDim, string elementName, int keysPerTile, string architecture)
    {
        var element = Enum.Parse<CudaElement>(elementName);
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
        var variant = new CudaFlashVariant(headDim, element, keysPerTile);
        // Through the compile cache: the emulated devices' backend compiles the same variants with the same options.
        var output = CudaCompileCache.Default.Compile(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName,
            variant.CompileOptions(architecture), out _);
        Assert.Contains($".entry {variant.EntryPoint}(", output.Ptx);
        if (element == CudaElement.F32)
        {
            Assert.Contains("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", output.Ptx);
            Assert.Contains("cvt.rna.tf32.f32", output.Ptx);
        }
        else
        {
            Assert.Contains(element == CudaElement.BF16 ? "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" : "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", output.Ptx);
            Assert.Contains("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", output.Ptx);
        }
        Assert.Contains("cp.async.cg.shared.global", output.Ptx);
        Assert.DoesNotContain(".local", output.Ptx); // accumulators stay in registers: no spills to local memory
        Assert.True(output.Cubin is { Length: > 0 });
        // ptxas can still spill when it allocates registers (the PTX above cannot show that): its report must show no
        // spill, except where one is known and explained below.
        var report = PtxasReport.Parse(output.Log, variant.EntryPoint);
        Assert.True(report is not null, $"no ptxas report for {variant.EntryPoint} in NVRTC's log:\n{output.Log}");
        var (registers, _, stores, loads) = report.Value;
        Assert.InRange(registers, 1, 255);
        var mismatch = SpillMismatch(variant.EntryPoint, architecture, registers, stores, loads, KnownSpills.Contains((variant.EntryPoint, architecture)));
        Assert.True(mismatch is null, mismatch);
    }

    /// <summary>Why a kernel's spills disagree with the known-spill list (a new spill, or a listed one gone); null when they agree.</summary>
    private static string? SpillMismatch(string entryPoint, string architecture, int registers, int stores, int loads, bool known) =>
        (stores > 0 || loads > 0) == known ? null
            : $"{entryPoint} for {architecture}: {registers} registers, {stores} bytes spill stores, {loads} bytes spill loads " +
              (known ? "(listed as a known spill: it no longer spills, so take it off the list)" : "(a spill in a variant meant not to spill)");

    /// <summary>
    /// The backward's three kernels per default-tile variant compile through NVRTC for sm_90 (the emulated device: its
    /// suites load the same cached images), with the tensor-core instructions in their PTX; ptxas's spills are listed
    /// below, and a new one fails. (`bench cuda-resources` reports every variant for any architecture.)
    /// </summary>
    [Theory]
    [InlineData("F16")]
    [InlineData("BF16")]
    [InlineData("F32")]
    public void Flash_backward_compiles_for_every_head_dimension(string elementName)
    {
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
        var element = Enum.Parse<CudaElement>(elementName);
        var failures = new List<string>();
        foreach (int d in CudaFlashVariant.NativeHeadDims)
        {
            var variant = new CudaBackwardVariant(d, element);
            var output = CudaCompileCache.Default.Compile(CudaKernelSources.FlashBackward, CudaKernelSources.FlashBackwardName, variant.CompileOptions("sm_90"), out _);
            foreach (var entry in new[] { variant.DeltaEntryPoint, variant.KeyValueEntryPoint, variant.QueryEntryPoint })
                Assert.Contains($".entry {entry}(", output.Ptx);
            Assert.Contains(element == CudaElement.F32 ? "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32"
                : element == CudaElement.BF16 ? "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" : "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", output.Ptx);
            Assert.Contains("cp.async.cg.shared.global", output.Ptx);
            foreach (var r in variant.Resources("sm_90"))
                if (SpillMismatch(r.EntryPoint, "sm_90", r.Registers, r.SpillStoreBytes, r.SpillLoadBytes, KnownBackwardSpills.Contains(r.EntryPoint)) is { } mismatch)
                    failures.Add(mismatch);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>
    /// Backward kernels ptxas spills today for sm_90 (NVRTC 11.2), not yet tuned on a GPU. The dK/dV kernel holds two
    /// D-wide fp32 accumulators (dK, dV: D registers per thread together) beside two score tiles: 8 bytes at fp16/bf16
    /// D = 64 and 128, 64-116 bytes at fp32 D = 96 and 128; at D = 256 the accumulators alone take the 255 registers
    /// (1.5 KB spilled at fp16/bf16, 0.6 KB at fp32; FlashAttention-2 splits D across warps there, which this kernel
    /// does not yet). fp32's dQ kernel at D = 256 spills 92 bytes. The default tiles are the largest that keep the rest
    /// spill-free (CudaBackwardVariant.DefaultKeysPerTile).
    /// </summary>
    private static readonly HashSet<string> KnownBackwardSpills =
    [
        "flash_backward_kv_d64_f16_k32", "flash_backward_kv_d128_f16_k16", "flash_backward_kv_d256_f16_k16",
        "flash_backward_kv_d64_bf16_k32", "flash_backward_kv_d128_bf16_k16", "flash_backward_kv_d256_bf16_k16",
        "flash_backward_kv_d96_f32_k16", "flash_backward_kv_d128_f32_k8", "flash_backward_kv_d256_f32_k8", "flash_backward_q_d256_f32_k8",
    ];

    /// <summary>The split-KV decode kernel and its merge compile for sm_80 per element type, without a spill.</summary>
    [Theory]
    [InlineData("F16")]
    [InlineData("BF16")]
    [InlineData("F32")]
    public void Flash_decode_compiles_without_spills(string elementName)
    {
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
        var element = Enum.Parse<CudaElement>(elementName);
        var resources = CudaDecodeKernel.Resources("sm_80", element).ToArray();
        Assert.Equal([CudaDecodeKernel.EntryPoint(element), CudaDecodeKernel.MergeEntryPoint(element)], resources.Select(r => r.EntryPoint));
        foreach (var r in resources)
        {
            Assert.InRange(r.Registers, 1, 255);
            Assert.True(r.SpillStoreBytes == 0 && r.SpillLoadBytes == 0, $"{r.EntryPoint}: {r.Registers} registers, spills {r.SpillStoreBytes}/{r.SpillLoadBytes} bytes");
        }
    }

    /// <summary>
    /// Variants ptxas spills today (NVRTC 11.2, this machine's and CI's compiler), each explained:
    /// <list type="bullet">
    /// <item>fp32: P V sums each 8-key slice's three tf32 mma into zeroed registers before one rounded add into O (on an
    /// H200, three mma straight into O's running sums truncated it out of the tolerance rule on 500-700-key rows; see
    /// flash_forward.cu, accumulate_3xtf32). ptxas overlaps the slices' chains and at the 255-register cap spills.</item>
    /// <item>Since the plain-tile body (tiles with no per-pair mask, guard or scale compiled apart; 1.4-1.9x faster on
    /// an H200, A/B in bench/RESULTS.md), NVRTC 11.2 also spilled 4-32 bytes for sm_80 in fp16 D = 96 and 256, bf16
    /// D = 128 and 256. nvcc 13 and NVRTC 13 on the H200 gave fp16/bf16 D = 128 no spill (244-255 registers) and fp16
    /// D = 64 16 bytes; the timings there include whatever those spills cost.</item>
    /// <item>The thirteenth session moved the checks of the default tiles from sm_80 to sm_90 (the emulated device, whose
    /// compiles the emulated suites reuse) and gave the forward's helpers template parameters for the backward; ptxas
    /// then allocated differently: for sm_80, fp32 D = 64 and fp16 D = 96 and 256 stopped spilling; for sm_90 fp32
    /// D = 96 spills 308 bytes and fp16 D = 256 4 bytes. Untimed (no GPU since).</item>
    /// </list>
    /// </summary>
    private static readonly HashSet<(string EntryPoint, string Architecture)> KnownSpills =
    [
        ("flash_forward_d96_f32", "sm_90"), ("flash_forward_d256_f32", "sm_80"), ("flash_forward_d256_f32", "sm_90"),
        ("flash_forward_d96_f32_k32", "sm_86"), ("flash_forward_d128_f32_k16", "sm_86"), ("flash_forward_d256_f32_k8", "sm_86"),
        ("flash_forward_d256_f16", "sm_90"),
    ];

    [Fact]
    public void The_ptxas_report_is_read_for_its_own_entry_point()
    {
        const string log = """
            ptxas info    : 40 bytes gmem
            ptxas info    : Compiling entry function 'flash_forward_d64_f16' for 'sm_80'
            ptxas info    : Function properties for flash_forward_d64_f16
            ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 176 registers, 696 bytes cmem[0]
            ptxas info    : Compiling entry function 'flash_forward_d128_f32' for 'sm_80'
            ptxas info    : Function properties for flash_forward_d128_f32
            ptxas         .     48 bytes stack frame, 52 bytes spill stores, 84 bytes spill loads
            ptxas info    : Used 168 registers, 696 bytes cmem[0]
            """;
        Assert.Equal((176, 0, 0, 0), PtxasReport.Parse(log, "flash_forward_d64_f16"));
        Assert.Equal((168, 48, 52, 84), PtxasReport.Parse(log, "flash_forward_d128_f32"));
        Assert.Null(PtxasReport.Parse(log, "flash_forward_d32_f16"));
        Assert.Throws<ArgumentException>(() => CudaBackend.KernelResources("80"));
        Assert.Throws<ArgumentException>(() => CudaBackend.KernelResources("sm_x0"));
    }

    [Theory]
    [InlineData("sm_80")]
    [InlineData("sm_90")]
    public void Strided_copy_compiles_with_both_element_widths(string architecture)
    {
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
        var output = NvrtcCompiler.Compile(CudaKernelSources.StridedCopy, CudaKernelSources.StridedCopyName, CudaStridedCopy.CompileOptions(architecture));
        Assert.Contains($".entry {CudaStridedCopy.EntryPoint(2)}(", output.Ptx);
        Assert.Contains($".entry {CudaStridedCopy.EntryPoint(4)}(", output.Ptx);
        Assert.DoesNotContain(".local", output.Ptx);
        Assert.True(output.Cubin is { Length: > 0 });
    }

    [Fact]
    public void Variants_cover_every_head_dimension_up_to_256_on_every_device_family()
    {
        foreach (var (devices, limit) in CudaFlashVariant.KnownSharedLimits)
        for (int d = 1; d <= 256; d++)
        foreach (var element in Enum.GetValues<CudaElement>())
        {
            var variant = CudaFlashVariant.For(d, element, limit);
            Assert.True(variant.HeadDim >= d && CudaFlashVariant.NativeHeadDims.Contains(variant.HeadDim));
            Assert.True(variant.SharedBytes <= limit, $"{variant} needs {variant.SharedBytes} bytes of shared memory; {devices} allow {limit}");
            Assert.Contains(variant, CudaFlashVariant.All);
            // The tile shrinks only where the default does not fit, and then only as far as it must.
            var byDefault = new CudaFlashVariant(variant.HeadDim, element);
            Assert.Equal(byDefault.SharedBytes <= limit, !variant.IsReducedTile);
            if (variant.IsReducedTile)
                Assert.True((variant with { KeysPerTile = variant.KeysPerTile * 2 }).SharedBytes > limit);
        }
        // The A100's 163 KiB and the H100's 227 KiB take every default tile; 99 KiB devices need three smaller ones.
        Assert.Equal(["flash_forward_d128_f32_k16", "flash_forward_d256_f32_k8", "flash_forward_d96_f32_k32"],
            CudaFlashVariant.All.Where(v => v.IsReducedTile).Select(v => v.EntryPoint).Order());
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaFlashVariant.For(257, CudaElement.F16));
        var tooSmall = Assert.Throws<NotSupportedException>(() => CudaFlashVariant.For(256, CudaElement.F32, 48 * 1024));
        Assert.Contains("49152", tooSmall.Message);
    }

    /// <summary>
    /// CMakeLists.txt (nvcc fatbins) and the emulator's build.sh list the variants in shell and CMake syntax: they
    /// must name exactly <see cref="CudaFlashVariant.All"/>, or a device would find no prebuilt image (or the emulator no
    /// kernel) for a tile the host picks.
    /// </summary>
    [Fact]
    public void Cmake_and_the_emulator_build_every_variant_the_host_picks()
    {
        var expected = CudaFlashVariant.All.Select(v => $"{v.HeadDim}:{v.Element.ToString().ToLowerInvariant()}:{(v.IsReducedTile ? v.KeysPerTile : 0)}")
            .Order().ToArray();
        foreach (var file in new[] { "CMakeLists.txt", "build.sh" })
        {
            // The backward's lists (checked by CudaBackwardTests) are not the forward's.
            string text = System.Text.RegularExpressions.Regex.Replace(
                File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "cuda-variant-lists", file)),
                @"backward_variants=\([^)]*\)|set\(ATTENTION_BACKWARD_VARIANTS[^)]*\)", "");
            // Both spell the default tiles as a loop over 32 64 96 128 256 x f16 bf16 f32, and the smaller ones by name.
            Assert.Contains("32 64 96 128 256", text);
            Assert.Contains("f16 bf16 f32", text);
            var reduced = System.Text.RegularExpressions.Regex.Matches(text, @"""?(\d+):(f16|bf16|f32):([1-9]\d*)""?")
                .Select(m => $"{m.Groups[1].Value}:{m.Groups[2].Value}:{m.Groups[3].Value}").Distinct();
            var listed = CudaFlashVariant.NativeHeadDims.SelectMany(d => new[] { "f16", "bf16", "f32" }.Select(e => $"{d}:{e}:0"))
                .Concat(reduced).Order().ToArray();
            Assert.Equal(expected, listed);
        }
    }

    [Fact]
    public void The_compile_cache_stores_once_and_keys_by_options()
    {
        if (NvrtcCompiler.UnavailableReason is { } reason) Assert.Skip(reason);
        var directory = Path.Combine(Path.GetTempPath(), "ae-cache-" + Guid.NewGuid().ToString("N"));
        try
        {
            var cache = new CudaCompileCache(directory);
            var variant = new CudaFlashVariant(32, CudaElement.F16);
            var first = cache.Cubin(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName, variant.CompileOptions("sm_80"), out bool hit1);
            var second = cache.Cubin(CudaKernelSources.FlashForward, CudaKernelSources.FlashForwardName, variant.CompileOptions("sm_80"), out bool hit2);
            Assert.False(hit1);
            Assert.True(hit2);
            Assert.Equal(first, second);
            Assert.NotEqual(CudaCompileCache.Key(CudaKernelSources.FlashForward, variant.CompileOptions("sm_80")),
                CudaCompileCache.Key(CudaKernelSources.FlashForward, variant.CompileOptions("sm_90")));
            Assert.Equal([".cubin", ".log", ".ptx"], Directory.GetFiles(directory).Select(Path.GetExtension).Order());
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }
}
