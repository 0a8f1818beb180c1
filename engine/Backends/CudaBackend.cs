using System.Runtime.InteropServices;
using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// The hand-written CUDA flash forward and backward (kernels/Cuda/flash_forward.cu, flash_backward.cu: mma.sync tensor
/// cores, ldmatrix, cp.async) on
/// one GPU (device 0 for <see cref="Default"/>; any other through <see cref="CudaBackend(int)"/>). Half and BFloat16
/// storage, and float storage multiplied as 3xTF32 on the tensor cores (near-fp32 accuracy); head dimensions up to 256
/// (other than 32/64/96/128/256 zero-padded);
/// causal and sliding-window bands, bias, keep-mask, block masks, GQA, Lq ≠ Lk, Dv ≠ D, LSE, any strides (host
/// spans are packed on the way in; <see cref="DeviceTensor{T}"/>s are used in place). Unavailable, with the reason, without a driver, a device of sm_80 or later, or a
/// way to get the kernel image (a CMake fatbin or NVRTC).
/// <para>Calls with Lq ≤ 8 whose only masks are the band and the key length (decode) run kernels/Cuda/flash_decode.cu
/// instead: the keys split across blocks (GQA heads packed as rows), each split's partial result merged exactly by its
/// LSE, so a few heads over a long cache still fill the GPU.</para>
/// <para>Not yet verified on a GPU: it is never chosen automatically; ask for it with Attention.Using(Backend.Cuda).</para>
/// </summary>
public sealed partial class CudaBackend : AttentionBackend, IDisposable
{
    /// <summary>The backend on CUDA device 0, opened on first use and shared by the process.</summary>
    public static CudaBackend Default { get; } = new();

    private readonly Lazy<(CudaDevice? Device, CudaKernels? Kernels, string? Error)> _state;
    private readonly object _gate = new();
    private bool _disposed;

    /// <summary>A backend on CUDA device 0 with its own context reference and kernels, opened on first use; dispose it to release them.</summary>
    public CudaBackend() : this(0) { }

    /// <summary>
    /// A backend on CUDA device <paramref name="deviceOrdinal"/> (its index among this machine's GPUs) with its own
    /// context reference and kernels, opened on first use; dispose it to release them. Kernels are compiled or loaded for
    /// that device's architecture, and each kernel's K/V tile is sized to the device's shared memory per block.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">deviceOrdinal is negative (a missing device makes the backend unavailable, with the reason).</exception>
    public CudaBackend(int deviceOrdinal)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(deviceOrdinal);
        DeviceOrdinal = deviceOrdinal;
        _state = new(() => Open(deviceOrdinal));
    }

    /// <summary>The index of the GPU this backend runs on.</summary>
    public int DeviceOrdinal { get; }

    /// <inheritdoc/>
    public override Backend Kind => Backend.Cuda;

    /// <summary>
    /// Compiles every flash-attention kernel variant (each native head dimension and element type, the smaller tiles of
    /// 99 KiB devices, the backward's Delta, dK/dV and dQ kernels, and the split-KV decode kernel and its merge per
    /// element type) for
    /// <paramref name="architecture"/> with NVRTC and returns what ptxas reports for each: registers per thread, stack
    /// frame, spills, and the dynamic shared memory it is launched with. Needs NVRTC only, not a GPU; several seconds
    /// per variant.
    /// </summary>
    /// <param name="architecture">a compute target: "sm_" and the compute capability, e.g. "sm_80", "sm_90a"</param>
    /// <exception cref="ArgumentException">the architecture is not spelled sm_NN (optionally with a letter suffix)</exception>
    /// <exception cref="InvalidOperationException">NVRTC is not available here (the message says why)</exception>
    public static IReadOnlyList<CudaKernelResources> KernelResources(string architecture)
    {
        ArgumentNullException.ThrowIfNull(architecture);
        string digits = architecture.StartsWith("sm_", StringComparison.Ordinal) ? architecture[3..].TrimEnd('a', 'f') : "";
        if (digits.Length is < 2 or > 3 || !digits.All(char.IsAsciiDigit))
            throw new ArgumentException($"architecture is \"{architecture}\"; expected sm_ and the compute capability, e.g. sm_80 or sm_90a.", nameof(architecture));
        if (NvrtcCompiler.UnavailableReason is { } reason) throw new InvalidOperationException($"NVRTC is not available: {reason}");
        // One NVRTC compile per variant, run in parallel (NVRTC programs are independent); the compiles land in the
        // compile cache, so this also prepares the backend's own loads for that architecture.
        var decode = Task.Run(() => Enum.GetValues<CudaElement>().AsParallel().AsOrdered()
            .SelectMany(element => CudaDecodeKernel.Resources(architecture, element)).ToArray());
        var flash = CudaFlashVariant.All.AsParallel().AsOrdered().Select(variant => variant.Resources(architecture)).ToArray();
        var backward = CudaBackwardVariant.All.AsParallel().AsOrdered().SelectMany(variant => variant.Resources(architecture)).ToArray();
        return [.. flash, .. backward, .. decode.GetAwaiter().GetResult()];
    }

    /// <inheritdoc/>
    public override string? UnavailableReason => _state.Value.Error;

    private static (CudaDevice?, CudaKernels?, string?) Open(int ordinal)
    {
        if (CudaDriver.UnavailableReason is { } reason) return (null, null, reason);
        if (CudaKernels.ImageUnavailableReason is { } noImage) return (null, null, noImage);
        try
        {
            if (ordinal >= CudaDriver.DeviceCount)
                return (null, null, $"there is no CUDA device {ordinal}: this machine has {CudaDriver.DeviceCount}");
            var device = CudaDevice.Open(ordinal);
            int major = device.Attribute(CudaDeviceAttribute.ComputeCapabilityMajor);
            if (major < 8)
            {
                string architecture = device.Architecture;
                device.Dispose();
                return (null, null, $"the kernels need sm_80 or later (mma.sync bf16, cp.async); device {ordinal} is {architecture}");
            }
            return (device, new CudaKernels(device), null);
        }
        catch (Exception e) when (e is CudaException or InvalidOperationException or DllNotFoundException or EntryPointNotFoundException)
        {
            return (null, null, e.Message);
        }
    }

    /// <inheritdoc/>
    public override string? CannotServe<T>(scoped in AttentionCall<T> call)
    {
        var shape = call.Shape;
        if (Math.Max(shape.HeadDim, shape.ValueDim) > 256)
            return $"head dimensions up to 256 (q has D = {shape.HeadDim}, v has Dv = {shape.ValueDim})";
        if (call.ReturnWeights) return "attention weights are not returned by the CUDA kernel; use the Cpu backend to inspect them";
        if (GridLimit(shape) is { } grid) return grid;
        return DenseCopyLimit(shape, 256, weights: false);
    }

    /// <inheritdoc/>
    public override bool SupportsFunctors => true;

    /// <inheritdoc/>
    public override bool SupportsDropout => true;

    /// <inheritdoc/>
    protected internal override void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
    {
        if (typeof(TScore) != typeof(IdentityScore))
            throw new NotSupportedException($"Backend {Name} runs block masks but not score functors ({typeof(TScore).Name}): C# functors cannot run in CUDA C++. Use the IlGpu or Cpu backend.");
        Run(call, blockMask);
    }

    private void Run<T, TMask>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask) where T : unmanaged where TMask : struct, IMaskMod
    {
        // fp32 travels as fp32; fp16 and bf16 as their bits.
        if (typeof(T) == typeof(float)) Run<T, TMask, float>(call, blockMask, CudaElement.F32);
        else Run<T, TMask, ushort>(call, blockMask, CudaElements.Of<T>());
    }

    private unsafe void Run<T, TMask, TStorage>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, CudaElement element)
        where T : unmanaged where TMask : struct, IMaskMod where TStorage : unmanaged
    {
        var (device, kernels) = Opened();
        var shape = call.Shape;
        long rows = (long)shape.Batch * shape.QueryHeads * shape.QueryLength;
        var variant = Variant(shape, element, kernels);
        int dn = variant.HeadDim;

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            device.MakeCurrent();
            using var scratch = new DeviceScratch();
            // Host spans travel packed: dense rows of exactly the kernel's D, zero-padded.
            var q = scratch.Upload<TStorage>(HostPacking.Dense<T, TStorage>(call.Q, dn));
            var k = scratch.Upload<TStorage>(HostPacking.Dense<T, TStorage>(call.K, dn));
            var v = scratch.Upload<TStorage>(HostPacking.Dense<T, TStorage>(call.V, dn));
            var o = scratch.Allocate(rows * dn * sizeof(TStorage));
            var lse = call.ReturnLse ? scratch.Allocate(rows * sizeof(float)) : null;

            var p = BaseParams(shape, call.Band, call.Scale, call.Dropout);
            (p.Q, p.QStrides) = (q.Address, Dense(shape.QueryHeads, shape.QueryLength, dn));
            (p.K, p.KStrides) = (k.Address, Dense(shape.KvHeads, shape.KeyLength, dn));
            (p.V, p.VStrides) = (v.Address, Dense(shape.KvHeads, shape.KeyLength, dn));
            (p.O, p.OStrides) = (o.Address, Dense(shape.QueryHeads, shape.QueryLength, dn));
            if (lse is not null) (p.Lse, p.LseStrides) = (lse.Address, Dense(shape.QueryHeads, shape.QueryLength, 1));
            AttachMasks(ref p, shape, call.Bias, call.KeepMask, blockMask, scratch);

            using var stream = CudaStream.Create();
            Launch(kernels, variant, shape, p, stream, scratch);
            stream.Synchronize();

            var output = new TStorage[rows * dn];
            o.CopyTo(MemoryMarshal.AsBytes(output.AsSpan()));
            HostPacking.Scatter<TStorage, T>(output, call.Output, dn);
            if (lse is not null) DownloadLse(lse, call.Lse, rows);
        }
    }

    /// <summary>
    /// Attention on tensors already on the GPU, read and written in place. Q/K/V/output whose rows are exactly the
    /// kernel's head dimension (32, 64, 96, 128 or 256, the same for q and v), contiguous along D and 16-byte aligned
    /// (address and every stride) are used as they are; others are first packed on the device by a copy kernel, so any
    /// layout works, at the cost of the copy.
    /// <para>
    /// Bias, keep-mask and <c>options.Lse</c> may be host spans (copied per call); <paramref name="lse"/> receives the
    /// LSE on the device instead. With <paramref name="stream"/> the work is queued on it after what the caller queued
    /// there, and the call returns without waiting when it needs no temporary buffers (everything in place, no host
    /// masks or host LSE); otherwise, and without a stream, it returns once the results are written.
    /// </para>
    /// </summary>
    /// <exception cref="ArgumentException">shapes, devices or aliasing are invalid; the message names the tensor.</exception>
    /// <exception cref="NotSupportedException">D or Dv above 256, or options.Weights.</exception>
    /// <exception cref="InvalidOperationException">the backend is unavailable, or the tensors are on another device than the backend's.</exception>
    public void Forward<T>(DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output,
        scoped in AttentionOptions options = default, DeviceTensor<float>? lse = null, CudaStream? stream = null) where T : unmanaged =>
        RunDevice<T, KeepAll>(AttentionValidator.ValidateDevice(q, k, v, output, options, lse), null, stream);

    /// <summary>
    /// <see cref="Forward{T}(DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, in AttentionOptions, DeviceTensor{float}?, CudaStream?)"/>
    /// with a block-sparse mask: empty blocks are skipped, full blocks run unmasked, partial blocks use the mask's pairs.
    /// </summary>
    public void Forward<T, TMask>(DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output, BlockMask<TMask> blockMask,
        scoped in AttentionOptions options = default, DeviceTensor<float>? lse = null, CudaStream? stream = null)
        where T : unmanaged where TMask : struct, IMaskMod
    {
        var call = AttentionValidator.ValidateDevice(q, k, v, output, options, lse);
        AttentionValidator.ValidateBlockMask(blockMask, call.Shape);
        RunDevice(call, blockMask, stream);
    }

    private unsafe void RunDevice<T, TMask>(scoped in DeviceAttentionCall<T> call, BlockMask<TMask>? blockMask, CudaStream? stream)
        where T : unmanaged where TMask : struct, IMaskMod
    {
        var shape = call.Shape;
        var (device, kernels) = OpenedFor(call.Q.Device.Ordinal);
        ThrowIfTooWide(shape);
        var variant = Variant(shape, CudaElements.Of<T>(), kernels);
        int dn = variant.HeadDim, bytes = variant.ElementBytes;

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            device.MakeCurrent();
            using var scope = new DeviceCallScope(stream);
            var (queue, scratch) = (scope.Queue, scope.Scratch);
            var copies = new DeviceOperands(kernels, scratch, queue, dn, bytes);

            var p = BaseParams(shape, call.Band, call.Scale, call.Dropout);
            (p.Q, p.QStrides) = copies.Input(call.Q);
            (p.K, p.KStrides) = copies.Input(call.K);
            (p.V, p.VStrides) = copies.Input(call.V);
            var (outputAddress, outputStrides, unpack) = copies.Output(call.Output);
            (p.O, p.OStrides) = (outputAddress, outputStrides);
            DeviceMemory? hostLse = null;
            if (call.Lse is { } lse) (p.Lse, p.LseStrides) = (lse.Address, new Strides3(lse.Strides[0], lse.Strides[1], lse.Strides[2]));
            else if (!call.HostLse.IsEmpty)
            {
                hostLse = scratch.Allocate((long)shape.Batch * shape.QueryHeads * shape.QueryLength * sizeof(float));
                (p.Lse, p.LseStrides) = (hostLse.Address, Dense(shape.QueryHeads, shape.QueryLength, 1));
            }
            AttachMasks(ref p, shape, call.Bias, call.KeepMask, blockMask, scratch);

            Launch(kernels, variant, shape, p, queue, scratch);
            unpack?.Invoke();
            // Queued work reads the temporaries: they are freed only after it. In-place calls on a caller's stream need none.
            scope.Complete();
            if (hostLse is not null) DownloadLse(hostLse, call.HostLse, (long)shape.Batch * shape.QueryHeads * shape.QueryLength);
        }
    }

    private (CudaDevice Device, CudaKernels Kernels) Opened()
    {
        var (device, kernels, error) = _state.Value;
        if (device is null || kernels is null) throw new InvalidOperationException($"Backend {Name} is not available: {error}");
        return (device, kernels);
    }

    /// <summary><see cref="Opened"/> for a call whose tensors live on device <paramref name="ordinal"/>: refused unless it is this backend's.</summary>
    private (CudaDevice Device, CudaKernels Kernels) OpenedFor(int ordinal)
    {
        var (device, kernels) = Opened();
        if (ordinal != device.Ordinal)
            throw new InvalidOperationException($"The tensors live on device {ordinal}; backend {Name} runs on device {device.Ordinal}.");
        return (device, kernels);
    }

    /// <summary>Device tensors go to the kernels as they are, so a head wider than the widest variant is refused with its sizes.</summary>
    private void ThrowIfTooWide(AttentionShape shape)
    {
        if (Math.Max(shape.HeadDim, shape.ValueDim) > 256)
            throw new NotSupportedException($"Backend {Name} takes head dimensions up to 256 (q has D = {shape.HeadDim}, v has Dv = {shape.ValueDim}).");
    }

    /// <summary>The variant for the call on this device: its head dimension, at the tile the device's shared memory takes.</summary>
    private static CudaFlashVariant Variant(AttentionShape shape, CudaElement element, CudaKernels kernels)
    {
        if (GridLimit(shape) is { } grid) throw new NotSupportedException($"{shape}: {grid}.");
        return CudaFlashVariant.For(Math.Max(shape.HeadDim, shape.ValueDim), element, kernels.SharedLimit);
    }

    /// <summary>Why the flash kernel's grid (batch·heads blocks in x, Lq / 64 in y) cannot cover the call; null when it can.</summary>
    private static string? GridLimit(AttentionShape shape) =>
        (long)shape.Batch * shape.QueryHeads > int.MaxValue || (shape.QueryLength + (long)CudaFlashVariant.RowsPerBlock - 1) / CudaFlashVariant.RowsPerBlock > 65535
            ? $"the CUDA grid covers batch·heads ≤ {int.MaxValue} and Lq ≤ {65535 * CudaFlashVariant.RowsPerBlock} (the call has {(long)shape.Batch * shape.QueryHeads} and {shape.QueryLength})"
            : null;

    /// <summary>Strides of a dense [batch, heads, rows, width] tensor.</summary>
    internal static Strides3 Dense(int heads, int rows, int width) => new((long)heads * rows * width, (long)rows * width, width);

    private static FlashParams BaseParams(AttentionShape shape, DiagonalBand band, float scale, AttentionDropout dropout)
    {
        var stream = dropout.Stream;
        return new()
        {
            BandLo = band.Lo, BandHi = band.Hi,
            Batch = shape.Batch, Heads = shape.QueryHeads, KvHeads = shape.KvHeads, Lq = shape.QueryLength, Lk = shape.KeyLength,
            Scale = scale,
            Dropout = stream.IsActive ? 1 : 0,
            DropoutKey0 = stream.Key0, DropoutKey1 = stream.Key1, DropoutOffset = stream.Offset, DropoutThreshold = stream.Threshold, DropoutScale = stream.Scale,
        };
    }

    /// <summary>Uploads the bias, keep-mask and block mask (host data) into <paramref name="scratch"/> and points <paramref name="p"/> at them.</summary>
    private static void AttachMasks<TMask>(ref FlashParams p, AttentionShape shape, scoped in ReadOnlyStrided4<float> bias,
        scoped in ReadOnlyStrided4<bool> keepMask, BlockMask<TMask>? blockMask, DeviceScratch scratch) where TMask : struct, IMaskMod
    {
        if (!bias.IsEmpty)
        {
            var (dense, sb, sh, sq) = HostPacking.Broadcast(bias, (float x) => x);
            (p.Bias, p.BiasStrideB, p.BiasStrideH, p.BiasStrideQ) = (scratch.Upload<float>(dense).Address, sb, sh, sq);
        }
        if (!keepMask.IsEmpty)
        {
            var (dense, sb, sh, sq) = HostPacking.Broadcast(keepMask, (bool x) => x ? (byte)1 : (byte)0);
            (p.Keep, p.KeepStrideB, p.KeepStrideH, p.KeepStrideQ) = (scratch.Upload<byte>(dense).Address, sb, sh, sq);
        }
        if (blockMask is not null)
        {
            var kinds = scratch.Upload(MemoryMarshal.AsBytes(blockMask.Kinds.AsSpan()));
            var (slotsDense, pairsDense) = PartialPairsBuilder.Build(blockMask, shape.Batch, shape.QueryHeads);
            (p.Kinds, p.Slots, p.Pairs) = (kinds.Address, scratch.Upload<int>(slotsDense).Address, scratch.Upload<byte>(pairsDense).Address);
            var grid = blockMask.Grid;
            (p.BlockBatch, p.BlockHeads, p.QueryBlocks, p.KeyBlocks, p.QueryBlock, p.KeyBlock) =
                (grid.Batch, grid.Heads, grid.QueryBlocks, grid.KeyBlocks, grid.QueryBlock, grid.KeyBlock);
        }
    }

    /// <summary>
    /// Queues the call on <paramref name="stream"/>: the split-KV decode kernel and its merge for few queries whose only
    /// masks are the band and the key length (partials in <paramref name="scratch"/>), else the flash kernel.
    /// </summary>
    private static unsafe void Launch(CudaKernels kernels, CudaFlashVariant variant, AttentionShape shape, FlashParams p, CudaStream stream,
        DeviceScratch scratch)
    {
        bool decode = shape.QueryLength <= CudaDecodeKernel.MaxQueryLength && p.Bias == 0 && p.Keep == 0 && p.Kinds == 0 && p.Dropout == 0
            && CudaDecodeKernel.GridLimit(shape) is null;
        if (!decode)
        {
            LaunchFlash(kernels.Flash(variant), variant, shape, p, stream);
            return;
        }
        var d = DecodeParams.From(p, variant.HeadDim);
        LaunchDecode(kernels, variant.Element, ref d, shape, stream, scratch);
    }

    /// <summary>Queues flash_decode.cu's split kernel and merge for <paramref name="d"/> (splits and partials set here).</summary>
    private static unsafe void LaunchDecode(CudaKernels kernels, CudaElement element, ref DecodeParams d, AttentionShape shape, CudaStream stream,
        DeviceScratch scratch)
    {
        long rows = (long)shape.Batch * shape.QueryHeads * shape.QueryLength, outputs = rows * d.Dv;
        var (split, merge) = kernels.Decode(element);
        (d.Splits, d.KeysPerSplit) = CudaDecodeKernel.Split(shape, kernels.Multiprocessors);
        d.PartialO = scratch.Allocate(d.Splits * outputs * sizeof(float)).Address;
        d.PartialLse = scratch.Allocate(d.Splits * rows * sizeof(float)).Address;
        fixed (DecodeParams* parameters = &d)
        {
            void* argument = parameters;
            split.Launch(((uint)(shape.Batch * shape.KvHeads), (uint)d.Splits, (uint)CudaDecodeKernel.RowChunks(shape)),
                (CudaDecodeKernel.ThreadsPerBlock, 1, 1), CudaDecodeKernel.SharedBytes, stream, &argument);
            merge.Launch(((uint)((outputs + CudaDecodeKernel.ThreadsPerBlock - 1) / CudaDecodeKernel.ThreadsPerBlock), 1, 1),
                (CudaDecodeKernel.ThreadsPerBlock, 1, 1), 0, stream, &argument);
        }
    }

    private static unsafe void LaunchFlash(CudaFunction function, CudaFlashVariant variant, AttentionShape shape, FlashParams p, CudaStream stream)
    {
        void* argument = &p;
        uint rowBlocks = (uint)((shape.QueryLength + CudaFlashVariant.RowsPerBlock - 1) / CudaFlashVariant.RowsPerBlock);
        function.Launch(((uint)(shape.Batch * shape.QueryHeads), rowBlocks, 1), (CudaFlashVariant.ThreadsPerBlock, 1, 1),
            (uint)variant.SharedBytes, stream, &argument);
    }

    private static void DownloadLse(DeviceMemory lse, scoped in Strided4<float> destination, long rows)
    {
        var host = new float[rows];
        lse.CopyTo(MemoryMarshal.AsBytes(host.AsSpan()));
        HostPacking.Scatter<float, float>(host, destination);
    }

    /// <inheritdoc/>
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
