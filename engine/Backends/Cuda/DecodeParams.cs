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
    /// <summary>0: K and V contiguous per sequence. Else the device block table (int32 per page of each sequence).</summary>
    public ulong BlockTable;
    /// <summary>0: every sequence has <see cref="Lk"/> keys. Else the device's int32 key length per sequence.</summary>
    public ulong KeyLengths;
    public long BandLo, BandHi;
    /// <summary>K and V: batch (contiguous) or page (paged) stride, head stride, row (contiguous) or slot (paged) stride.</summary>
    public Strides3 QStrides, KStrides, VStrides, OStrides, LseStrides;
    public long TableStride;
    public int Batch, Heads, KvHeads, Lq, Lk;
    /// <summary>Columns of Q and K, and of V and O.</summary>
    public int D, Dv;
    public int Splits, KeysPerSplit;
    public int PageSize;
    /// <summary>1: the band is relative to the end of each sequence's keys (bottom-right alignment per sequence).</summary>
    public int BandFromEnd;
    public float Scale;

    /// <summary>The decode call for the operands <paramref name="p"/> already addresses (the flash kernel's parameter block).</summary>
    public static DecodeParams From(in FlashParams p, int d) => new()
    {
        Q = p.Q, K = p.K, V = p.V, O = p.O, Lse = p.Lse,
        BandLo = p.BandLo, BandHi = p.BandHi,
        QStrides = p.QStrides, KStrides = p.KStrides, VStrides = p.VStrides, OStrides = p.OStrides, LseStrides = p.LseStrides,
        Batch = p.Batch, Heads = p.Heads, KvHeads = p.KvHeads, Lq = p.Lq, Lk = p.Lk, D = d, Dv = d, Scale = p.Scale,
    };
}
