using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// A validated backward call on <see cref="DeviceTensor{T}"/>s: the forward call it differentiates (its Output is the
/// saved output, read only), the saved LSE and the incoming gradient on the device, the gradient destinations on the
/// device, and the bias-gradient destination as a host view (the bias itself is a host view, uploaded per call).
/// Built only by <see cref="AttentionValidator.ValidateDeviceBackward{T}"/>.
/// </summary>
internal readonly ref struct DeviceBackwardCall<T> where T : unmanaged
{
    internal DeviceBackwardCall(DeviceAttentionCall<T> forward, DeviceTensor<float> lse, DeviceTensor<T> dOutput,
        DeviceTensor<T> dQ, DeviceTensor<T> dK, DeviceTensor<T> dV, Strided4<float> dBias)
    {
        Forward = forward;
        Lse = lse; DOutput = dOutput;
        DQ = dQ; DK = dK; DV = dV;
        DBias = dBias;
    }

    public DeviceAttentionCall<T> Forward { get; }

    /// <summary>The forward's saved natural-log LSE, [B, Hq, Lq].</summary>
    public DeviceTensor<float> Lse { get; }

    /// <summary>The incoming gradient dO, shaped as the output.</summary>
    public DeviceTensor<T> DOutput { get; }
    public DeviceTensor<T> DQ { get; }
    public DeviceTensor<T> DK { get; }
    public DeviceTensor<T> DV { get; }

    /// <summary>[B, Hq, Lq, Lk] host view of the bias-gradient destination (stride 0 where the bias broadcasts); empty when not wanted.</summary>
    public Strided4<float> DBias { get; }

    public bool ReturnBiasGradient => !DBias.IsEmpty;
}
