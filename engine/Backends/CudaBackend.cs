using System.Runtime.InteropServices;
using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine;

/// <summary>
/// The hand-written CUDA flash forward (kernels/cuda/flash_forward.cu: mma.sync tensor cores, ldmatrix, cp.async) on
/// the first GPU. Half and BFloat16 storage, and float storage multiplied as 3xTF32 on the tensor cores (near-fp32
/// accuracy); head dimensions up to 256 (other than 32/64/96/128/256 zero-padded);
/// causal and sliding-window bands, bias, keep-mask, block masks, GQA, Lq ≠ Lk, Dv ≠ D, LSE, any strides (host
/// spans are packed on the way in). Unavailable, with the reason, without a driver, a device of sm_80 or later, or a
/// way to get the kernel image (a CMake fatbin or NVRTC).
/// <para>Not yet verified on a GPU: it is never chosen automatically; ask for it with Attention.Using(Backend.Cuda).</para>
/// </summary>
public sealed class CudaBackend : AttentionBackend, IDisposable
{
    public static CudaBackend Default { get; } = new();

    private readonly Lazy<(CudaDevice? Device, CudaKernels? Kernels, string? Error)> _state;
    private readonly object _gate = new();
    private bool _disposed;

    public CudaBackend() => _state = new(Open);

    public override Backend Kind => Backend.Cuda;

    public override string? UnavailableReason => _state.Value.Error;

    private static (CudaDevice?, CudaKernels?, string?) Open()
    {
        if (CudaDriver.UnavailableReason is { } reason) return (null, null, reason);
        if (CudaKernels.ImageUnavailableReason is { } noImage) return (null, null, noImage);
        try
        {
            var device = CudaDevice.Open(0);
            int major = device.Attribute(CudaDeviceAttribute.ComputeCapabilityMajor);
            if (major < 8)
            {
                string architecture = device.Architecture;
                device.Dispose();
                return (null, null, $"the kernels need sm_80 or later (mma.sync bf16, cp.async); device 0 is {architecture}");
            }
            return (device, new CudaKernels(device), null);
        }
        catch (Exception e) when (e is CudaException or InvalidOperationException or DllNotFoundException or EntryPointNotFoundException)
        {
            return (null, null, e.Message);
        }
    }

    public override string? CannotServe<T>(scoped in AttentionCall<T> call)
    {
        var shape = call.Shape;
        if (Math.Max(shape.HeadDim, shape.ValueDim) > 256)
            return $"head dimensions up to 256 (q has D = {shape.HeadDim}, v has Dv = {shape.ValueDim})";
        if (call.ReturnWeights) return "attention weights are not returned by the CUDA kernel; use the Cpu backend to inspect them";
        return null;
    }

    public override bool SupportsFunctors => true;

    protected internal override void Execute<T>(scoped in AttentionCall<T> call) => Run(call, (BlockMask<KeepAll>?)null);

    protected internal override void ExecuteFlex<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
    {
        if (typeof(TScore) != typeof(IdentityScore))
            throw new NotSupportedException($"Backend {Name} runs block masks but not score functors ({typeof(TScore).Name}): C# functors cannot run in CUDA C++. Use the IlGpu or Cpu backend.");
        Run(call, blockMask);
    }

    private void Run<T, TMask>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask) where T : unmanaged where TMask : struct, IMaskMod
    {
        // fp32 travels as fp32; fp16 and bf16 as their bits.
        if (typeof(T) == typeof(float)) Run<T, TMask, float>(call, blockMask, CudaElement.F32);
        else Run<T, TMask, ushort>(call, blockMask, typeof(T) == typeof(BFloat16) ? CudaElement.BF16 : CudaElement.F16);
    }

    private unsafe void Run<T, TMask, TStorage>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, CudaElement element)
        where T : unmanaged where TMask : struct, IMaskMod where TStorage : unmanaged
    {
        var (device, kernels, error) = _state.Value;
        if (device is null || kernels is null) throw new InvalidOperationException($"Backend {Name} is not available: {error}");
        var shape = call.Shape;
        long rows = (long)shape.Batch * shape.QueryHeads * shape.QueryLength;
        if (rows == 0) return;
        var variant = CudaFlashVariant.For(Math.Max(shape.HeadDim, shape.ValueDim), element);
        int dn = variant.HeadDim;
        if ((long)shape.Batch * shape.QueryHeads > int.MaxValue || (shape.QueryLength + CudaFlashVariant.RowsPerBlock - 1) / CudaFlashVariant.RowsPerBlock > 65535)
            throw new NotSupportedException($"{shape} exceeds the CUDA grid (batch·heads ≤ {int.MaxValue}, Lq ≤ {65535 * CudaFlashVariant.RowsPerBlock}).");

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            device.MakeCurrent();
            var function = kernels.Flash(variant);
            using var q = Upload<TStorage>(HostPacking.Dense<T, TStorage>(call.Q, dn));
            using var k = Upload<TStorage>(HostPacking.Dense<T, TStorage>(call.K, dn));
            using var v = Upload<TStorage>(HostPacking.Dense<T, TStorage>(call.V, dn));
            using var o = DeviceMemory.Allocate(checked((nuint)(rows * dn * sizeof(TStorage))));
            using var lse = DeviceMemory.Allocate(checked((nuint)(rows * sizeof(float))));

            var p = new FlashParams
            {
                Q = q.Address, K = k.Address, V = v.Address, O = o.Address, Lse = lse.Address,
                BandLo = call.Band.Lo, BandHi = call.Band.Hi,
                Batch = shape.Batch, Heads = shape.QueryHeads, KvHeads = shape.KvHeads, Lq = shape.QueryLength, Lk = shape.KeyLength,
                Scale = call.Scale,
            };
            DeviceMemory? bias = null, keep = null, kinds = null, slots = null, pairs = null;
            try
            {
                if (call.HasBias)
                {
                    var (dense, sb, sh, sq) = HostPacking.Broadcast(call.Bias, (float x) => x);
                    bias = Upload<float>(dense);
                    (p.Bias, p.BiasStrideB, p.BiasStrideH, p.BiasStrideQ) = (bias.Address, sb, sh, sq);
                }
                if (call.HasKeepMask)
                {
                    var (dense, sb, sh, sq) = HostPacking.Broadcast(call.KeepMask, (bool x) => x ? (byte)1 : (byte)0);
                    keep = Upload<byte>(dense);
                    (p.Keep, p.KeepStrideB, p.KeepStrideH, p.KeepStrideQ) = (keep.Address, sb, sh, sq);
                }
                if (blockMask is not null)
                {
                    kinds = Upload(MemoryMarshal.AsBytes(blockMask.Kinds.AsSpan()));
                    var (slotsDense, pairsDense) = PartialPairsBuilder.Build(blockMask, shape.Batch, shape.QueryHeads);
                    slots = Upload<int>(slotsDense);
                    pairs = Upload<byte>(pairsDense);
                    (p.Kinds, p.Slots, p.Pairs) = (kinds.Address, slots.Address, pairs.Address);
                    (p.BlockBatch, p.BlockHeads, p.QueryBlocks, p.KeyBlocks, p.QueryBlock, p.KeyBlock) =
                        (blockMask.Batch, blockMask.Heads, blockMask.QueryBlocks, blockMask.KeyBlocks, blockMask.QueryBlock, blockMask.KeyBlock);
                }

                using var stream = CudaStream.Create();
                void* argument = &p;
                uint rowBlocks = (uint)((shape.QueryLength + CudaFlashVariant.RowsPerBlock - 1) / CudaFlashVariant.RowsPerBlock);
                function.Launch(((uint)(shape.Batch * shape.QueryHeads), rowBlocks, 1), (CudaFlashVariant.ThreadsPerBlock, 1, 1),
                    (uint)variant.SharedBytes, stream, &argument);
                stream.Synchronize();

                var output = new TStorage[rows * dn];
                o.CopyTo(MemoryMarshal.AsBytes(output.AsSpan()));
                HostPacking.Scatter<TStorage, T>(output, call.Output, dn);
                if (call.ReturnLse)
                {
                    var lseHost = new float[rows];
                    lse.CopyTo(MemoryMarshal.AsBytes(lseHost.AsSpan()));
                    HostPacking.Scatter<float, float>(lseHost, call.Lse);
                }
            }
            finally
            {
                bias?.Dispose(); keep?.Dispose(); kinds?.Dispose(); slots?.Dispose(); pairs?.Dispose();
            }
        }
    }

    private static DeviceMemory Upload<TElement>(ReadOnlySpan<TElement> data) where TElement : unmanaged
    {
        var bytes = MemoryMarshal.AsBytes(data);
        var memory = DeviceMemory.Allocate((nuint)Math.Max(bytes.Length, 1));
        try
        {
            if (bytes.Length > 0) memory.CopyFrom(bytes);
            return memory;
        }
        catch
        {
            memory.Dispose();
            throw;
        }
    }

    private static DeviceMemory Upload(ReadOnlySpan<byte> data) => Upload<byte>(data);

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            if (_state.IsValueCreated)
            {
                _state.Value.Kernels?.Dispose();
                _state.Value.Device?.Dispose();
            }
        }
    }
}
