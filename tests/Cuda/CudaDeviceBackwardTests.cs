using System.Numerics.Tensors;
using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The CUDA backward on <see cref="DeviceTensor{T}"/>s. The host-span backward is verified against the oracle
/// (CudaBackwardTests); a device call runs the same kernels on the same bits, so here it must match that path bitwise,
/// whatever the device layouts (in place, or packed and unpacked by strided_copy.cu), with block masks too. Runs on a
/// GPU, or on the CUDA emulator without one; skips with the reason where neither exists.
/// </summary>
[Collection(nameof(CudaTests))]
public class CudaDeviceBackwardTests
{
    private static readonly ProblemLimits Emulated = new() { MaxBatch = 2, MaxQueryHeads = 4, MaxLength = 100, MaxHeadDim = 128, MaxCost = 6e5, RangeEdge = false };

    private static (CudaBackend Backend, CudaDevice Device) Open() => CudaDeviceTensorTests.Open();

    private static nint[] DrawLayout(ReadOnlySpan<nint> lengths, Random random) => CudaDeviceTensorTests.DrawLayout(lengths, random);

    /// <summary>The case's gradients through host spans: dQ, dK, dV, and the bias gradient (empty without a bias).</summary>
    private static (T[] DQ, T[] DK, T[] DV, float[] DBias) HostGradients<T>(CudaBackend backend, CpuBackwardProperties.BackwardCase<T> c)
        where T : unmanaged
    {
        var (dq, dk, dv) = c.Destinations();
        using var dBias = c.Problem.Bias is null ? null : NativeTensor<float>.Zeros(c.Problem.Bias.Lengths);
        using (dq) using (dk) using (dv)
        {
            backend.Backward<T>(c.Problem.Q, c.Problem.K, c.Problem.V, c.Output, c.Lse, c.DOutput, dq, dk, dv, c.Problem.Options(),
                dBias is null ? default : dBias.AsTensorSpan());
            return (dq.ToArray(), dk.ToArray(), dv.ToArray(), dBias?.ToArray() ?? []);
        }
    }

    private static void DeviceCallMatchesHostCall<T>(ProblemSpec spec) where T : unmanaged
    {
        var (backend, device) = Open();
        using var _ = device;
        using var c = new CpuBackwardProperties.BackwardCase<T>(spec, backend);
        // A fully padded row (finite huge bias): host spans recompute it, device tensors refuse it.
        bool refused = CudaBackwardTests.RefusesRows(c);
        var expected = HostGradients(backend, c);
        var problem = c.Problem;
        var random = new Random(spec.DataSeed);
        DeviceTensor<T> Copy(NativeTensor<T> host) => DeviceTensor<T>.CopyOf(device, host, DrawLayout(host.Lengths, random));
        DeviceTensor<T> Gradient(NativeTensor<T> like) => DeviceTensor<T>.Allocate(device, like.Lengths, DrawLayout(like.Lengths, random));
        using var q = Copy(problem.Q);
        using var k = Copy(problem.K);
        using var v = Copy(problem.V);
        using var output = Copy(c.Output);
        using var dOutput = Copy(c.DOutput);
        nint[] lseLengths = [.. c.Lse.Lengths];
        using var lse = DeviceTensor<float>.CopyOf(device, c.Lse, random.Next(2) == 0 ? default : TensorLayout.Permuted(lseLengths, [2, 0, 1]));
        using var dq = Gradient(problem.Q);
        using var dk = Gradient(problem.K);
        using var dv = Gradient(problem.V);
        using var dBias = problem.Bias is null ? null : NativeTensor<float>.Zeros(problem.Bias.Lengths);
        dBias?.Fill(float.NaN); // every element the backward owns must be written

        void Call() => backend.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, problem.Options(), dBias is null ? default : dBias.AsTensorSpan());
        if (refused)
        {
            CudaBackwardTests.ExpectRefusal(Call);
            return;
        }
        Call();

        Assert.True(expected.DQ.SequenceEqual(dq.ToArray()), $"dQ differs: {spec}");
        Assert.True(expected.DK.SequenceEqual(dk.ToArray()), $"dK differs: {spec}");
        Assert.True(expected.DV.SequenceEqual(dv.ToArray()), $"dV differs: {spec}");
        Assert.True(expected.DBias.SequenceEqual(dBias?.ToArray() ?? []), $"dBias differs: {spec}");
    }

    private static void Verify<T>(int gpuCases, int emulatedCases) where T : unmanaged
    {
        CudaBackendTests.Gpu();
        var limits = CudaEmulation.Active ? Emulated : CpuBackwardProperties.Limits;
        Prop.ForAll(ShrinkBudget.Capped(AttentionGen.Arbitrary(limits)), (ProblemSpec spec) => DeviceCallMatchesHostCall<T>(spec))
            .Check(Config.QuickThrowOnFailure.WithMaxTest(CudaEmulation.Active ? emulatedCases : gpuCases));
    }

    [Fact] public void F16_device_gradients_match_host_gradients_bitwise() => Verify<Half>(60, 6);
    [Fact] public void Bf16_device_gradients_match_host_gradients_bitwise() => Verify<BFloat16>(60, 4);
    [Fact] public void F32_device_gradients_match_host_gradients_bitwise() => Verify<float>(60, 4);

    /// <summary>
    /// The hidden-key contract through device tensors: keys hidden from every row hold NaN, ±infinity or ±1e30 in K and
    /// V (and masked bias entries NaN or +infinity), and every gradient bit of the clean call stays, the poisoned keys'
    /// dK and dV are 0. Each call uploads into drawn layouts, so the copies strided_copy.cu makes carry the garbage too.
    /// </summary>
    [Fact]
    public void Poisoned_hidden_keys_change_no_device_gradient_bit()
    {
        var (backend, device) = Open();
        using var _ = device;
        var limits = CudaEmulation.Active ? Emulated with { MaxLength = 90, MaxHeadDim = 64, MaxCost = 4e5 } : HostileInputSuite.Gradients;
        int n = 0, cases = CudaEmulation.Active ? 4 : 40;
        foreach (var drawn in AttentionGen.Sample(cases, seed: 231, limits))
            CpuBackwardProperties.CheckHostileBackward(HostileInputSuite.ForGradients(HostileInputSuite.Hostile(drawn, n++), drawn), backend,
                DeviceRun<Half>(backend, device, new Random(n)));
        foreach (var drawn in AttentionGen.Sample(cases / 2, seed: 232, limits))
            CpuBackwardProperties.CheckHostileBackward(HostileInputSuite.ForGradients(HostileInputSuite.Hostile(drawn, n++), drawn), backend,
                DeviceRun<float>(backend, device, new Random(n)));
    }

    /// <summary>The device backward as a <see cref="CpuBackwardProperties.BackwardRun{T}"/>: every tensor uploaded into a drawn layout.</summary>
    private static CpuBackwardProperties.BackwardRun<T> DeviceRun<T>(CudaBackend backend, CudaDevice device, Random random) where T : unmanaged =>
        (c, k, v, dq, dk, dv, options) =>
        {
            DeviceTensor<T> Copy(NativeTensor<T> host) => DeviceTensor<T>.CopyOf(device, host, DrawLayout(host.Lengths, random));
            DeviceTensor<T> Gradient(NativeTensor<T> like) => DeviceTensor<T>.Allocate(device, like.Lengths, DrawLayout(like.Lengths, random));
            using var dq_ = Gradient(dq);
            using var dk_ = Gradient(dk);
            using var dv_ = Gradient(dv);
            using var q_ = Copy(c.Problem.Q);
            using var k_ = Copy(k);
            using var v_ = Copy(v);
            using var output = Copy(c.Output);
            using var dOutput = Copy(c.DOutput);
            using var lse = DeviceTensor<float>.CopyOf(device, c.Lse);
            backend.Backward(q_, k_, v_, output, lse, dOutput, dq_, dk_, dv_, options);
            dq_.CopyTo(dq);
            dk_.CopyTo(dk);
            dv_.CopyTo(dv);
            // And each call (clean or poisoned) equals the host-span call bit for bit, so a download that lost the
            // gradients cannot pass as "unchanged".
            var (hq, hk, hv) = c.Destinations();
            using (hq) using (hk) using (hv)
            {
                backend.Backward<T>(c.Problem.Q, k, v, c.Output, c.Lse, c.DOutput, hq, hk, hv, options);
                Assert.True(hq.ToArray().SequenceEqual(dq.ToArray()) && hk.ToArray().SequenceEqual(dk.ToArray()) && hv.ToArray().SequenceEqual(dv.ToArray()),
                    $"device gradients differ from the host call's: {c.Problem.Shape}");
            }
        };

    /// <summary>
    /// dQ, dK and dV as three interleaved views of one packed [B, S, 3, H, D] buffer (FlashAttention's qkv-packed
    /// gradient): accepted (their elements never meet), written in place at a native D with no copy kernel, and equal
    /// to the host call's gradients. At D = 48 they go through padded copies instead.
    /// </summary>
    [Fact]
    public void Gradients_into_one_packed_buffer_are_written_in_place()
    {
        var (backend, device) = Open();
        using var _ = device;
        foreach (int d in new[] { 64, 48 })
        {
            const int heads = 2, length = 40;
            var spec = new ProblemSpec { QueryHeads = heads, KvHeads = heads, QueryLength = length, KeyLength = length, HeadDim = d, ValueDim = d,
                Causal = CausalAlignment.TopLeft, DataSeed = d };
            using var c = new CpuBackwardProperties.BackwardCase<Half>(spec, backend);
            var expected = HostGradients(backend, c);
            using var q = DeviceTensor<Half>.CopyOf(device, c.Problem.Q);
            using var k = DeviceTensor<Half>.CopyOf(device, c.Problem.K);
            using var v = DeviceTensor<Half>.CopyOf(device, c.Problem.V);
            using var output = DeviceTensor<Half>.CopyOf(device, c.Output);
            using var dOutput = DeviceTensor<Half>.CopyOf(device, c.DOutput);
            using var lse = DeviceTensor<float>.CopyOf(device, c.Lse);
            using var packed = DeviceTensor<Half>.Zeros(device, 1, length, 3, heads, d);
            nint[] lengths = [1, heads, length, d], strides = [length * 3 * heads * d, d, 3 * heads * d, 1];
            using var dq = DeviceTensor<Half>.FromAddress(device, packed.Address, lengths, strides);
            using var dk = DeviceTensor<Half>.FromAddress(device, packed.Address + (ulong)(heads * d * 2), lengths, strides);
            using var dv = DeviceTensor<Half>.FromAddress(device, packed.Address + (ulong)(2 * heads * d * 2), lengths, strides);

            long launches = CudaEmulation.Active ? CudaEmulation.Launches : 0;
            backend.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, c.Problem.Options());
            if (CudaEmulation.Active) // in place: Delta, dK/dV, dQ; packed: 5 copies in, 3 kernels, 3 copies out
                Assert.Equal(d == 64 ? 3 : 11, CudaEmulation.Launches - launches);

            Assert.True(expected.DQ.SequenceEqual(dq.ToArray()), $"D = {d}: dQ differs");
            Assert.True(expected.DK.SequenceEqual(dk.ToArray()), $"D = {d}: dK differs");
            Assert.True(expected.DV.SequenceEqual(dv.ToArray()), $"D = {d}: dV differs");
        }
    }

    /// <summary>
    /// A block mask's backward on the GPU: through host spans it gives the gradients of the dense keep-mask it describes
    /// (skipped empty blocks and unmasked full blocks add exactly what masked pairs add: nothing), and through device
    /// tensors the same bits.
    /// </summary>
    [Fact]
    public void A_block_masks_gradients_are_its_dense_keep_masks_on_host_and_device_tensors()
    {
        var (backend, device) = Open();
        using var _ = device;
        var limits = CudaEmulation.Active ? Emulated with { MaxHeadDim = 64, MaxCost = 3e5 } : CpuBackwardProperties.Limits;
        foreach (var drawn in AttentionGen.Sample(CudaEmulation.Active ? 4 : 40, seed: 77, limits))
        {
            var spec = drawn with { KeepMask = KeepMaskKind.None, Dropout = default };
            using var problem = AttentionProblem<Half>.Create(spec);
            var flex = FlexMaskCase.Draw(problem.Shape, new Random(spec.DataSeed));
            using var dense = FlexAttentionProperties.WithKeepMask(problem, flex.Dense(problem.Shape));
            var s = problem.Shape;
            // The saved output and LSE are the masked forward's: the dense problem's, on the GPU.
            using var output = dense.AllocateOutput();
            using var lse = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength);
            backend.Forward<Half>(dense.Q, dense.K, dense.V, output, dense.Options(lse.AsTensorSpan()));
            using var dOutput = TensorRandom.Create<Half>(spec.DataSeed + 1, ValueDistribution.Normal, s.Batch, s.QueryHeads, s.QueryLength, s.ValueDim);
            NativeTensor<Half> Zeros(NativeTensor<Half> like) => NativeTensor<Half>.Zeros(like.Lengths);
            using NativeTensor<Half> dq1 = Zeros(problem.Q), dk1 = Zeros(problem.K), dv1 = Zeros(problem.V);
            using NativeTensor<Half> dq2 = Zeros(problem.Q), dk2 = Zeros(problem.K), dv2 = Zeros(problem.V);
            flex.Backward<Half>(backend, problem.Q, problem.K, problem.V, output, lse, dOutput, dq1, dk1, dv1, problem.Options());
            backend.Backward<Half>(dense.Q, dense.K, dense.V, output, lse, dOutput, dq2, dk2, dv2, dense.Options());
            Assert.True(dq1.ToArray().SequenceEqual(dq2.ToArray()), $"dQ differs: {spec} {flex}");
            Assert.True(dk1.ToArray().SequenceEqual(dk2.ToArray()), $"dK differs: {spec} {flex}");
            Assert.True(dv1.ToArray().SequenceEqual(dv2.ToArray()), $"dV differs: {spec} {flex}");

            using var dq = DeviceTensor<Half>.Zeros(device, [.. problem.Q.Lengths]);
            using var dk = DeviceTensor<Half>.Zeros(device, [.. problem.K.Lengths]);
            using var dv = DeviceTensor<Half>.Zeros(device, [.. problem.V.Lengths]);
            using (var q = DeviceTensor<Half>.CopyOf(device, problem.Q))
            using (var k = DeviceTensor<Half>.CopyOf(device, problem.K))
            using (var v = DeviceTensor<Half>.CopyOf(device, problem.V))
            using (var o = DeviceTensor<Half>.CopyOf(device, output))
            using (var l = DeviceTensor<float>.CopyOf(device, lse))
            using (var g = DeviceTensor<Half>.CopyOf(device, dOutput))
            {
                void Call() => flex.DeviceBackward(backend, q, k, v, o, l, g, dq, dk, dv, problem.Options());
                if (lse.Storage.ToArray().Any(CudaBackend.IsCoarseLse))
                {
                    // A fully padded row (finite huge bias): host spans recompute it, device tensors refuse it.
                    CudaBackwardTests.ExpectRefusal(Call);
                    continue;
                }
                Call();
            }
            Assert.True(dq1.ToArray().SequenceEqual(dq.ToArray()), $"device dQ differs: {spec} {flex}");
            Assert.True(dk1.ToArray().SequenceEqual(dk.ToArray()), $"device dK differs: {spec} {flex}");
            Assert.True(dv1.ToArray().SequenceEqual(dv.ToArray()), $"device dV differs: {spec} {flex}");
        }
    }

    [Fact]
    public void A_callers_stream_orders_the_work_and_temporaries_never_leak()
    {
        var (backend, device) = Open();
        using var _ = device;
        long before = CudaEmulation.Active ? CudaEmulation.LiveAllocations : 0;
        var spec = new ProblemSpec { QueryHeads = 4, KvHeads = 2, QueryLength = 33, KeyLength = 50, HeadDim = 40, ValueDim = 24, DataSeed = 5,
            Causal = CausalAlignment.BottomRight, Bias = BiasKind.PerHead, KeepMask = KeepMaskKind.KeyPadding };
        using var c = new CpuBackwardProperties.BackwardCase<float>(spec, backend);
        var expected = HostGradients(backend, c);
        using (var stream = CudaStream.Create())
        using (var q = DeviceTensor<float>.CopyOf(device, c.Problem.Q))
        using (var k = DeviceTensor<float>.CopyOf(device, c.Problem.K))
        using (var v = DeviceTensor<float>.CopyOf(device, c.Problem.V))
        using (var output = DeviceTensor<float>.CopyOf(device, c.Output))
        using (var lse = DeviceTensor<float>.CopyOf(device, c.Lse))
        using (var dOutput = DeviceTensor<float>.CopyOf(device, c.DOutput))
        using (var dq = DeviceTensor<float>.Zeros(device, [.. c.Problem.Q.Lengths]))
        using (var dk = DeviceTensor<float>.Zeros(device, [.. c.Problem.K.Lengths]))
        using (var dv = DeviceTensor<float>.Zeros(device, [.. c.Problem.V.Lengths]))
        using (var dBias = NativeTensor<float>.Zeros(c.Problem.Bias!.Lengths))
        {
            backend.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, c.Problem.Options(), dBias.AsTensorSpan(), stream);
            Assert.Equal(expected.DQ, dq.ToArray());
            Assert.Equal(expected.DK, dk.ToArray());
            Assert.Equal(expected.DV, dv.ToArray());
            Assert.Equal(expected.DBias, dBias.ToArray());

            // The Attention entry point runs the same call.
            dq.CopyFrom(NativeTensor<float>.Zeros(c.Problem.Q.Lengths));
            Attention.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, c.Problem.Options());
            Assert.Equal(expected.DQ, dq.ToArray());
        }
        if (CudaEmulation.Active) Assert.Equal(before, CudaEmulation.LiveAllocations);
    }

    [Fact]
    public void Bad_device_backward_calls_fail_with_the_tensor_named()
    {
        var (backend, device) = Open();
        using var _ = device;
        using var q = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 32);
        using var k = DeviceTensor<Half>.Zeros(device, 1, 2, 20, 32);
        using var v = DeviceTensor<Half>.Zeros(device, 1, 2, 20, 32);
        using var output = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 32);
        using var lse = DeviceTensor<float>.Zeros(device, 1, 2, 16);
        using var dOutput = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 32);
        using var dq = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 32);
        using var dk = DeviceTensor<Half>.Zeros(device, 1, 2, 20, 32);
        using var dv = DeviceTensor<Half>.Zeros(device, 1, 2, 20, 32);
        long launches = CudaEmulation.Active ? CudaEmulation.Launches : 0;

        void Refused<TException>(string parameter, string text, Action call) where TException : Exception
        {
            var error = Assert.Throws<TException>(call);
            if (error is ArgumentException argument) Assert.Equal(parameter, argument.ParamName);
            Assert.Contains(text, error.Message);
        }

        using var wrongLse = DeviceTensor<float>.Zeros(device, 1, 2, 17);
        Refused<ArgumentException>("lse", "17", () => backend.Backward(q, k, v, output, wrongLse, dOutput, dq, dk, dv));
        using var wrongDOutput = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 31);
        Refused<ArgumentException>("dOutput", "the lengths of output", () => backend.Backward(q, k, v, output, lse, wrongDOutput, dq, dk, dv));
        using var wrongDK = DeviceTensor<Half>.Zeros(device, 1, 2, 21, 32);
        Refused<ArgumentException>("dK", "the lengths of k", () => backend.Backward(q, k, v, output, lse, dOutput, dq, wrongDK, dv));
        Refused<ArgumentException>("dQ", "overlaps the memory of q", () => backend.Backward(q, k, v, output, lse, dOutput, q, dk, dv));
        Refused<ArgumentException>("dV", "overlaps the memory of dK", () => backend.Backward(q, k, v, output, lse, dOutput, dq, dk, dk));
        using var smallDq = DeviceTensor<Half>.FromAddress(device, lse.Address, [1, 2, 16, 32], TensorLayout.Contiguous([1, 2, 16, 32]));
        Refused<ArgumentException>("dQ", "overlaps the memory of lse", () => backend.Backward(q, k, v, output, lse, dOutput, smallDq, dk, dv));
        Refused<ArgumentNullException>("dV", "dV", () => backend.Backward(q, k, v, output, lse, dOutput, dq, dk, null!));

        var dBias = new float[2 * 16 * 20];
        Refused<ArgumentException>("dBias", "no options.Bias", () =>
            backend.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, default, new TensorSpan<float>(dBias, [1, 2, 16, 20], [])));
        var bias = new float[16 * 20];
        Refused<ArgumentException>("dBias", "expected the broadcast of options.Bias", () =>
            backend.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, new AttentionOptions { Bias = new TensorSpan<float>(bias, [16, 20], []) },
                new TensorSpan<float>(dBias, [1, 2, 16, 20], [])));
        Refused<ArgumentException>("dBias", "overlaps the memory of options.Bias", () =>
            backend.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, new AttentionOptions { Bias = new TensorSpan<float>(bias, [16, 20], []) },
                new TensorSpan<float>(bias, [16, 20], [])));
        Refused<NotSupportedException>("", "Int8", () =>
            backend.Backward(q, k, v, output, lse, dOutput, dq, dk, dv, new AttentionOptions { ScorePrecision = ScorePrecision.Int8 }));

        using var wide = DeviceTensor<Half>.Zeros(device, 1, 1, 4, 300);
        using var wideOut = DeviceTensor<Half>.Zeros(device, 1, 1, 4, 300);
        using var wideGrad = DeviceTensor<Half>.Zeros(device, 1, 1, 4, 300);
        using var wideGrad2 = DeviceTensor<Half>.Zeros(device, 1, 1, 4, 300);
        using var wideGrad3 = DeviceTensor<Half>.Zeros(device, 1, 1, 4, 300);
        using var wideLse = DeviceTensor<float>.Zeros(device, 1, 1, 4);
        Refused<NotSupportedException>("", "up to 256", () => backend.Backward(wide, wide, wide, wideOut, wideLse, wideOut, wideGrad, wideGrad2, wideGrad3));

        var disposed = DeviceTensor<Half>.Zeros(device, 1, 2, 16, 32);
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => backend.Backward(q, k, v, output, lse, disposed, dq, dk, dv));
        if (CudaEmulation.Active) Assert.Equal(launches, CudaEmulation.Launches); // nothing ran
    }
}
