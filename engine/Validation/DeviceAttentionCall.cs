using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// A validated attention call on <see cref="DeviceTensor{T}"/>s: shapes checked, scale and positional mask resolved,
/// every tensor on one live device, outputs disjoint from inputs. Bias and keep-mask stay host views broadcast to
/// [batch, queryHeads, Lq, Lk] (uploaded per call); the LSE goes to a device tensor, a host view, or nowhere.
/// </summary>
internal readonly ref struct DeviceAttentionCall<T> where T : unmanaged
{
    internal DeviceAttentionCall(
        AttentionShape shape, float scale, DiagonalBand band,
        DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output,
        ReadOnlyStrided4<float> bias, ReadOnlyStrided4<bool> keepMask, DeviceTensor<float>? lse, Strided4<float> hostLse, AttentionDropout dropout)
    {
        Dropout = dropout;
        Shape = shape; Scale = scale; Band = band;
        Q = q; K = k; V = v; Output = output;
        Bias = bias; KeepMask = keepMask; Lse = lse; HostLse = hostLse;
    }

    public AttentionShape Shape { get; }

    /// <summary>Dropout on the probabilities (the default: none).</summary>
    public AttentionDropout Dropout { get; }
    public float Scale { get; }
    public DiagonalBand Band { get; }
    public DeviceTensor<T> Q { get; }
    public DeviceTensor<T> K { get; }
    public DeviceTensor<T> V { get; }
    public DeviceTensor<T> Output { get; }

    /// <summary>[B, Hq, Lq, Lk] host view of the additive bias; empty when none.</summary>
    public ReadOnlyStrided4<float> Bias { get; }

    /// <summary>[B, Hq, Lq, Lk] host view of the keep-mask; empty when none.</summary>
    public ReadOnlyStrided4<bool> KeepMask { get; }

    /// <summary>Device LSE destination [B, Hq, Lq], or null.</summary>
    public DeviceTensor<float>? Lse { get; }

    /// <summary>Host LSE destination (options.Lse) as [B, Hq, Lq, 1]; empty when not wanted.</summary>
    public Strided4<float> HostLse { get; }
}
