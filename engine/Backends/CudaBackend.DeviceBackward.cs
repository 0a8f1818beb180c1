using System.Numerics.Tensors;
using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine;

/// <summary>The backward pass on tensors already on the GPU (the kernels of <c>CudaBackend.Backward.cs</c>).</summary>
public sealed partial class CudaBackend
{
    /// <summary>
    /// Gradients of a loss with respect to q, k and v, on tensors already on the GPU: <paramref name="dOutput"/> is
    /// ∂L/∂output of a <see cref="Forward{T}(DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, in AttentionOptions, DeviceTensor{float}?, CudaStream?)"/>
    /// call with the same options, and <paramref name="output"/> and <paramref name="lse"/> are what it produced. dK and
    /// dV are summed over the query heads of a GQA group; every gradient is a fixed sum in a fixed order, the same bits
    /// every run, and the same bits as the host-span backward.
    /// <para>
    /// Layouts as in the forward: tensors whose rows are exactly the kernel's head dimension, contiguous along D and
    /// 16-byte aligned are read and written in place; others go through packed copies on the device. dQ, dK and dV may
    /// be interleaved views of one buffer (a packed [B, S, 3, H, D] gradient). Bias and keep-mask are host spans, as in
    /// the forward; <paramref name="dBias"/>, a host span shaped as the bias (any broadcast), receives its gradient.
    /// With <paramref name="stream"/> the work is queued after what the caller queued there; the call returns once the
    /// gradients are written (the kernels' per-row Delta is a temporary of the call).
    /// </para>
    /// </summary>
    /// <exception cref="ArgumentException">shapes, devices or aliasing are invalid; the message names the tensor.</exception>
    /// <exception cref="NotSupportedException">D or Dv above 256, int8 scores, a grid or bias gradient beyond the backward's limits (the numbers are given).</exception>
    /// <exception cref="InvalidOperationException">the backend is unavailable, or the tensors are on another device than the backend's.</exception>
    public void Backward<T>(DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output, DeviceTensor<float> lse,
        DeviceTensor<T> dOutput, DeviceTensor<T> dQ, DeviceTensor<T> dK, DeviceTensor<T> dV,
        scoped in AttentionOptions options = default, TensorSpan<float> dBias = default, CudaStream? stream = null) where T : unmanaged =>
        RunDeviceBackward<T, KeepAll>(AttentionValidator.ValidateDeviceBackward(q, k, v, output, lse, dOutput, dQ, dK, dV, options, dBias), null, stream);

    /// <summary>
    /// <see cref="Backward{T}(DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{float}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, in AttentionOptions, TensorSpan{float}, CudaStream?)"/>
    /// of a forward that ran with <paramref name="blockMask"/>: empty blocks are skipped, partial blocks use the mask's pairs.
    /// </summary>
    public void Backward<T, TMask>(DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output, DeviceTensor<float> lse,
        DeviceTensor<T> dOutput, DeviceTensor<T> dQ, DeviceTensor<T> dK, DeviceTensor<T> dV, BlockMask<TMask> blockMask,
        scoped in AttentionOptions options = default, TensorSpan<float> dBias = default, CudaStream? stream = null)
        where T : unmanaged where TMask : struct, IMaskMod
    {
        var call = AttentionValidator.ValidateDeviceBackward(q, k, v, output, lse, dOutput, dQ, dK, dV, options, dBias);
        AttentionValidator.ValidateBlockMask(blockMask, call.Forward.Shape);
        RunDeviceBackward(call, blockMask, stream);
    }

    private unsafe void RunDeviceBackward<T, TMask>(scoped in DeviceBackwardCall<T> call, BlockMask<TMask>? blockMask, CudaStream? stream)
        where T : unmanaged where TMask : struct, IMaskMod
    {
        var forward = call.Forward;
        var shape = forward.Shape;
        var (device, kernels) = OpenedFor(forward.Q.Device.Ordinal);
        ThrowIfTooWide(shape);
        if (BackwardLimit(shape, call.ReturnBiasGradient) is { } limit) throw new NotSupportedException($"{shape}: {limit}.");
        var variant = CudaBackwardVariant.For(Math.Max(shape.HeadDim, shape.ValueDim), CudaElements.Of<T>(), kernels.SharedLimit);
        int dn = variant.HeadDim;
        long rows = (long)shape.Batch * shape.QueryHeads * shape.QueryLength;

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            device.MakeCurrent();
            // One download of the saved LSE (B·Hq·Lq floats) to find rows the kernels cannot differentiate, once the
            // caller's stream has finished writing it (the forward may still be running on it).
            stream?.Synchronize();
            var savedLse = new float[rows];
            call.Lse.CopyTo(new TensorSpan<float>(savedLse, [shape.Batch, shape.QueryHeads, shape.QueryLength], []));
            ThrowIfCoarseLse(shape, savedLse);
            using var scope = new DeviceCallScope(stream);
            var (queue, scratch) = (scope.Queue, scope.Scratch);
            var copies = new DeviceOperands(kernels, scratch, queue, dn, variant.ElementBytes);

            var f = BaseParams(shape, forward.Band, forward.Scale, forward.Dropout);
            (f.Q, f.QStrides) = copies.Input(forward.Q);
            (f.K, f.KStrides) = copies.Input(forward.K);
            (f.V, f.VStrides) = copies.Input(forward.V);
            (f.O, f.OStrides) = copies.Input(forward.Output);
            var lse = call.Lse;
            (f.Lse, f.LseStrides) = (lse.Address, new Strides3(lse.Strides[0], lse.Strides[1], lse.Strides[2]));
            AttachMasks(ref f, shape, forward.Bias, forward.KeepMask, blockMask, scratch);
            var p = new BackwardParams { Forward = f, Delta = scratch.Allocate(rows * sizeof(float)).Address };
            (p.DOutput, p.DOutputStrides) = copies.Input(call.DOutput);
            var (dq, dqStrides, unpackDQ) = copies.Output(call.DQ);
            var (dk, dkStrides, unpackDK) = copies.Output(call.DK);
            var (dv, dvStrides, unpackDV) = copies.Output(call.DV);
            (p.DQ, p.DQStrides, p.DK, p.DKStrides, p.DV, p.DVStrides) = (dq, dqStrides, dk, dkStrides, dv, dvStrides);
            // The dQ kernel writes dS where a row sees the pair; pairs it skips keep these zeros.
            var dBias = call.ReturnBiasGradient ? scratch.Upload<float>(new float[rows * shape.KeyLength]) : null;
            p.DBias = dBias?.Address ?? 0;

            LaunchBackward(kernels.Backward(variant), variant, shape, p, queue);
            unpackDQ?.Invoke();
            unpackDK?.Invoke();
            unpackDV?.Invoke();
            scope.Complete();
            if (dBias is not null) SumBiasGradient(shape, call.DBias, dBias);
        }
    }
}
