using System.Numerics.Tensors;
using AttentionEngine.Bench.Cuda;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// <see cref="DeviceTensor{T}"/> and the CUDA backend's device overloads. The host-span path is verified against the
/// oracle (CudaBackendTests); a device call runs the same kernel on the same bits, so here it must match that path
/// bitwise, whatever the device layouts (in place, or packed and unpacked by strided_copy.cu). Runs on a GPU, or on
/// the CUDA emulator without one; skips with the reason where neither exists.
/// </summary>
[Collection(nameof(CudaTests))]
public class CudaDeviceTensorTests
{
    private static readonly ProblemLimits Emulated = new() { MaxBatch = 2, MaxQueryHeads = 4, MaxLength = 160, MaxCost = 2e6 };

    internal static (CudaBackend Backend, CudaDevice Device) Open()
    {
        var backend = CudaBackendTests.Gpu();
        return (backend, CudaDevice.Open(0));
    }

    /// <summary>Device strides for a tensor: row-major, [B, S, H, D] memory, odd padding (packed), or 16-byte padding (in place at native D).</summary>
    internal static nint[] DrawLayout(ReadOnlySpan<nint> lengths, Random random) => random.Next(4) switch
    {
        0 => TensorLayout.Contiguous(lengths),
        1 => TensorLayout.Permuted(lengths, [0, 2, 1, 3]),
        2 => TensorLayout.Padded(lengths, 3),
        _ => TensorLayout.Padded(lengths, 8),
    };

    private static void DeviceCallMatchesHostCall<T>(ProblemSpec spec) where T : unmanaged
    {
        var (backend, device) = Open();
        using var _ = device;
        using var problem = AttentionProblem<T>.Create(spec);
        var expected = problem.Run(backend);
        var shape = problem.Shape;
        var random = new Random(spec.DataSeed);
        nint[] outputLengths = [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim];
        nint[] lseLengths = [shape.Batch, shape.QueryHeads, shape.QueryLength];
        using var q = DeviceTensor<T>.CopyOf(device, problem.Q, DrawLayout(problem.Q.Lengths.ToArray(), random));
        using var k = DeviceTensor<T>.CopyOf(device, problem.K, DrawLayout(problem.K.Lengths.ToArray(), random));
        using var v = DeviceTensor<T>.CopyOf(device, problem.V, DrawLayout(problem.V.Lengths.ToArray(), random));
        using var output = DeviceTensor<T>.Allocate(device, outputLengths, DrawLayout(outputLengths, random));
        using var lse = DeviceTensor<float>.Allocate(device, lseLengths, random.Next(2) == 0 ? default : TensorLayout.Permuted(lseLengths, [2, 0, 1]));

        backend.Forward(q, k, v, output, problem.Options(), lse);

        Assert.Equal(expected.Output, Array.ConvertAll(output.ToArray(), ElementTypes.ToDouble));
        Assert.Equal(expected.Lse, Array.ConvertAll(lse.ToArray(), x => (double)x));
    }

    private static void Verify<T>(int gpuCases, int emulatedCases) where T : unmanaged
    {
        CudaBackendTests.Gpu();
        var limits = CudaEmulation.Active ? Emulated : null;
        Prop.ForAll(ShrinkBudget.Capped(AttentionGen.Arbitrary(limits)), (ProblemSpec spec) => DeviceCallMatchesHostCall<T>(spec))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(CudaEmulation.Active ? emulatedCases : gpuCases));
    }

    [Fact] public void F16_device_calls_match_host_calls_bitwise() => Verify<Half>(60, 20);
    [Fact] public void Bf16_device_calls_match_host_calls_bitwise() => Verify<BFloat16>(60, 15);
    [Fact] public void F32_device_calls_match_host_calls_bitwise() => Verify<float>(60, 15);

    [Fact]
    public void Native_head_dimensions_in_aligned_layouts_run_in_place_and_touch_nothing_else()
    {
        var (backend, device) = Open();
        using var _ = device;
        foreach (int d in new[] { 64, 48 }) // 64: in place; 48: packed to 64 and unpacked
        {
            var spec = new ProblemSpec { Batch = 2, QueryHeads = 2, KvHeads = 1, QueryLength = 70, KeyLength = 90, HeadDim = d, ValueDim = d, DataSeed = d };
            using var problem = AttentionProblem<Half>.Create(spec);
            var expected = problem.Run(backend, withLse: false);
            nint[] outputLengths = [2, 2, 70, d];
            var padded = TensorLayout.Padded(outputLengths, 8);
            using var q = DeviceTensor<Half>.CopyOf(device, problem.Q);
            using var k = DeviceTensor<Half>.CopyOf(device, problem.K);
            using var v = DeviceTensor<Half>.CopyOf(device, problem.V);
            // The output is a padded view into a larger buffer full of sentinels: only its elements may change.
            long storage = TensorLayout.StorageLength(outputLengths, padded);
            using var buffer = DeviceTensor<Half>.CopyOf(device, new ReadOnlyTensorSpan<Half>(Enumerable.Repeat((Half)7, (int)storage).ToArray()));
            using var output = DeviceTensor<Half>.FromAddress(device, buffer.Address, outputLengths, padded);

            long launches = CudaEmulation.Active ? CudaEmulation.Launches : 0;
            backend.Forward(q, k, v, output, problem.Options());
            if (CudaEmulation.Active)
                Assert.Equal(d == 64 ? 1 : 5, CudaEmulation.Launches - launches); // packed: Q, K, V in, output out

            Assert.Equal(expected.Output, Array.ConvertAll(output.ToArray(), ElementTypes.ToDouble));
            var everything = buffer.ToArray();
            var inside = new bool[storage];
            for (long n = 0; n < output.FlattenedLength; n++)
            {
                long rest = n, offset = 0;
                for (int dim = 3; dim >= 0; dim--) { offset += rest % outputLengths[dim] * padded[dim]; rest /= outputLengths[dim]; }
                inside[offset] = true;
            }
            for (long n = 0; n < storage; n++)
                if (!inside[n]) Assert.True(everything[n] == (Half)7, $"D = {d}: element {n} of the padding was overwritten");
        }
    }

    [Fact]
    public void A_callers_stream_orders_the_work_and_temporaries_never_leak()
    {
        var (backend, device) = Open();
        using var _ = device;
        long before = CudaEmulation.Active ? CudaEmulation.LiveAllocations : 0;
        var spec = new ProblemSpec { Batch = 1, QueryHeads = 4, KvHeads = 2, QueryLength = 65, KeyLength = 100, HeadDim = 40, ValueDim = 24, DataSeed = 5,
            Causal = CausalAlignment.BottomRight, Bias = BiasKind.PerHead, KeepMask = KeepMaskKind.KeyPadding };
        using var problem = AttentionProblem<Half>.Create(spec);
        var expected = problem.Run(backend);
        using (var stream = CudaStream.Create())
        using (var q = DeviceTensor<Half>.CopyOf(device, problem.Q))
        using (var k = DeviceTensor<Half>.CopyOf(device, problem.K))
        using (var v = DeviceTensor<Half>.CopyOf(device, problem.V))
        using (var output = DeviceTensor<Half>.Zeros(device, 1, 4, 65, 24))
        using (var lse = DeviceTensor<float>.Zeros(device, 1, 4, 65))
        {
            backend.Forward(q, k, v, output, problem.Options(), lse, stream);
            stream.Synchronize();
            Assert.Equal(expected.Output, Array.ConvertAll(output.ToArray(), ElementTypes.ToDouble));
            Assert.Equal(expected.Lse, Array.ConvertAll(lse.ToArray(), x => (double)x));

            // The host LSE destination works too, and so does the Attention entry point.
            var hostLse = new float[4 * 65];
            Attention.Forward(q, k, v, output, problem.Options(lse: new TensorSpan<float>(hostLse, [1, 4, 65], [])));
            Assert.Equal(expected.Lse, Array.ConvertAll(hostLse, x => (double)x));
        }
        if (CudaEmulation.Active) Assert.Equal(before, CudaEmulation.LiveAllocations);
    }

    [Fact]
    public void Bad_device_calls_fail_with_the_tensor_named()
    {
        var (backend, device) = Open();
        using var _ = device;
        using var q = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 32);
        using var k = DeviceTensor<Half>.Zeros(device, 1, 2, 20, 32);
        using var v = DeviceTensor<Half>.Zeros(device, 1, 2, 20, 32);
        using var output = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 32);

        using var wrongK = DeviceTensor<Half>.Zeros(device, 1, 2, 20, 16);
        var shape = Assert.Throws<ArgumentException>(() => backend.Forward(q, wrongK, v, output));
        Assert.Equal("k", shape.ParamName);
        Assert.Contains("dimension 3", shape.Message);

        using var aliased = DeviceTensor<Half>.FromAddress(device, q.Address, [1, 2, 16, 32], TensorLayout.Contiguous([1, 2, 16, 32]));
        Assert.Contains("overlaps the memory of q", Assert.Throws<ArgumentException>(() => backend.Forward(q, k, v, aliased)).Message);

        using var lse = DeviceTensor<float>.Zeros(device, 1, 2, 16);
        var hostLse = new float[32];
        var both = Assert.Throws<ArgumentException>(() => backend.Forward(q, k, v, output,
            new AttentionOptions { Lse = new TensorSpan<float>(hostLse, [1, 2, 16], []) }, lse));
        Assert.Equal("lse", both.ParamName);

        using var wrongLse = DeviceTensor<float>.Zeros(device, 1, 2, 17);
        Assert.Equal("lse", Assert.Throws<ArgumentException>(() => backend.Forward(q, k, v, output, default, wrongLse)).ParamName);

        var weights = new float[2 * 16 * 20];
        Assert.Throws<NotSupportedException>(() => backend.Forward(q, k, v, output,
            new AttentionOptions { Weights = new TensorSpan<float>(weights, [1, 2, 16, 20], []) }));

        using var wide = DeviceTensor<Half>.Zeros(device, 1, 1, 4, 300);
        using var wideOut = DeviceTensor<Half>.Zeros(device, 1, 1, 4, 300);
        Assert.Throws<NotSupportedException>(() => backend.Forward(wide, wide, wide, wideOut));

        var disposed = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 32);
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => backend.Forward(disposed, k, v, output));
        Assert.Throws<ObjectDisposedException>(() => disposed.ToArray());
    }

    [Fact]
    public void A_wrapped_output_whose_strides_run_past_its_memory_fails_with_an_illegal_address_on_the_emulator()
    {
        var (backend, device) = Open();
        using var _ = device;
        if (!CudaEmulation.Active) Assert.Skip("the emulator's address checks: a GPU may corrupt memory instead of faulting");
        using var q = DeviceTensor<Half>.Zeros(device, 1, 1, 16, 32);
        using var small = DeviceTensor<Half>.Zeros(device, 16 * 32);
        // The caller vouches for FromAddress memory; here the row stride claims twice the memory there is.
        using var output = DeviceTensor<Half>.FromAddress(device, small.Address, [1, 1, 16, 32], [1024, 1024, 64, 1]);
        var error = Assert.Throws<CudaException>(() => backend.Forward(q, q, q, output));
        Assert.Contains("CUDA_ERROR_ILLEGAL_ADDRESS", error.Message);
        Assert.Contains("output row store", CudaEmulation.LastLaunchError);
    }

    [Fact]
    public void Device_tensors_copy_through_any_layout_and_keep_what_lies_between_their_elements()
    {
        var (_, device) = Open();
        using var __ = device;
        nint[] lengths = [2, 3, 5, 7];
        var values = Enumerable.Range(0, 210).Select(n => (float)n).ToArray();
        using var host = NativeTensor<float>.FromArray(values, lengths);
        using var hostPermuted = NativeTensor<float>.CopyOf(host, TensorLayout.Permuted(lengths, [3, 1, 0, 2]));
        foreach (var strides in new[] { TensorLayout.Contiguous(lengths), TensorLayout.Permuted(lengths, [0, 2, 1, 3]), TensorLayout.Padded(lengths, 5) })
        {
            using var tensor = DeviceTensor<float>.CopyOf(device, hostPermuted, strides);
            Assert.Equal(values, tensor.ToArray());
            using var back = NativeTensor<float>.Allocate(lengths, TensorLayout.Padded(lengths, 2));
            tensor.CopyTo(back);
            Assert.Equal(values, back.ToArray());
        }

        // A wrapped tensor with gaps: writing it leaves the gaps (someone else's memory) as they were.
        var padded = TensorLayout.Padded(lengths, 1);
        long storage = TensorLayout.StorageLength(lengths, padded);
        using var owner = DeviceTensor<float>.CopyOf(device, new ReadOnlyTensorSpan<float>(Enumerable.Repeat(-1f, (int)storage).ToArray()));
        using var view = DeviceTensor<float>.FromAddress(device, owner.Address, lengths, padded);
        view.CopyFrom(host);
        Assert.Equal(values, view.ToArray());
        Assert.Equal(storage - 210, owner.ToArray().Count(x => x == -1f));

        Assert.Throws<ArgumentException>(() => view.CopyFrom(NativeTensor<float>.Zeros(2, 3, 5, 6)));
        Assert.Throws<ArgumentOutOfRangeException>(() => DeviceTensor<float>.Allocate(device, [2, 0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => DeviceTensor<float>.Allocate(device, [2, 3], [-1, 1]));
        Assert.Throws<ArgumentException>(() => DeviceTensor<float>.FromAddress(device, owner.Address + 2, [4], [1]));
    }

    [Fact]
    public void The_cuda_bench_times_forward_and_backward_device_calls_on_flashattentions_grid()
    {
        Assert.Equal(20, CudaCommand.Preset.Count);
        Assert.All(CudaCommand.Preset, c => Assert.Equal((16384, 2048), (c.Batch * c.QueryLength, c.Heads * c.HeadDim)));
        var (backend, device) = Open();
        using var _ = device;
        foreach (bool backward in new[] { false, true })
        {
            var rows = CudaTiming.TimeAll<Half>(backend, device, [PerformanceCase.Parse("B1 H2 N64 D32 causal")], "f16", 0.01, backward, CancellationToken.None);
            var row = Assert.Single(rows);
            Assert.True(row.Milliseconds > 0 && row.Tflops > 0 && row.Launches >= 3, row.ToString());
        }
    }

    [Fact]
    public void The_copy_kernels_parameter_block_matches_its_layout()
    {
        Assert.Equal(96, System.Runtime.InteropServices.Marshal.SizeOf<CopyParams>());
        Assert.Equal("strided_copy_b16", CudaStridedCopy.EntryPoint(2));
        Assert.Equal("strided_copy_b32", CudaStridedCopy.EntryPoint(4));
    }
}
