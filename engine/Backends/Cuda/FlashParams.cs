using System.Runtime.InteropServices;

namespace AttentionEngine;

/// <summary>
/// The host mirror of kernels/Cuda/flash_forward.cu's FlashParams, field for field in the same order (pointers, then
/// 64-bit, then 32-bit fields, so C's and .NET's sequential layouts agree without packing pragmas).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct FlashParams
{
    public ulong Q, K, V, O, Lse, Bias, Keep, Kinds, Slots, Pairs;
    public long BandLo, BandHi;
    public long BiasStrideB, BiasStrideH, BiasStrideQ;
    public long KeepStrideB, KeepStrideH, KeepStrideQ;
    public Strides3 QStrides, KStrides, VStrides, OStrides, LseStrides;
    public int Batch, Heads, KvHeads, Lq, Lk;
    public int BlockBatch, BlockHeads, QueryBlocks, KeyBlocks, QueryBlock, KeyBlock;
    public float Scale;
    /// <summary>1 with dropout; the stream's words follow (<see cref="Kernels.Dropout.DropoutStream"/>).</summary>
    public int Dropout;
    public uint DropoutKey0, DropoutKey1, DropoutOffset, DropoutThreshold;
    public float DropoutScale;
    private int _padding;
}

/// <summary>Batch, head and row strides in elements: one tensor's addressing in <see cref="FlashParams"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal readonly record struct Strides3(long Batch, long Head, long Row);
