using System.Runtime.InteropServices;

namespace AttentionEngine;

/// <summary>
/// The host mirror of kernels/Cuda/flash_decode.cu's DecodeParams, field for field in the same order (pointers, then
/// 64-bit, then 32-bit fields, so C's and .NET's sequential layouts agree without packing pragmas).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DecodeParams
{
    public ulong Q, K, V, O, Lse, PartialO, PartialLse;
    public long BandLo, BandHi;
    public Strides3 QStrides, KStrides, VStrides, OStrides, LseStrides;
    public int Batch, Heads, KvHeads, Lq, Lk;
    /// <summary>Columns of Q, K, V and O: the kernel's padded head dimension.</summary>
    public int D;
    public int Splits, KeysPerSplit;
    public float Scale;
    private int _padding;

    /// <summary>The decode call for the operands <paramref name="p"/> already addresses (the flash kernel's parameter block).</summary>
    public static DecodeParams From(in FlashParams p, int d) => new()
    {
        Q = p.Q, K = p.K, V = p.V, O = p.O, Lse = p.Lse,
        BandLo = p.BandLo, BandHi = p.BandHi,
        QStrides = p.QStrides, KStrides = p.KStrides, VStrides = p.VStrides, OStrides = p.OStrides, LseStrides = p.LseStrides,
        Batch = p.Batch, Heads = p.Heads, KvHeads = p.KvHeads, Lq = p.Lq, Lk = p.Lk, D = d, Scale = p.Scale,
    };
}
