using System.Runtime.InteropServices;

namespace AttentionEngine;

/// <summary>
/// The host mirror of kernels/Cuda/flash_backward.cu's BackwardParams: the forward call's <see cref="FlashParams"/>
/// (its O and LSE are the saved ones, read), then the backward's own pointers and strides, field for field.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BackwardParams
{
    public FlashParams Forward;
    public ulong DOutput, DQ, DK, DV, Delta, DBias;
    public Strides3 DOutputStrides, DQStrides, DKStrides, DVStrides;
    /// <summary>0, or dense [B, H, Lq] factors on every P of a row (1 / recomputed sum where the saved LSE is coarse).</summary>
    public ulong RowNorm;
}
