using ILGPU;

namespace AttentionEngine.Kernels.IlGpu;

/// <summary>
/// One attention problem as the ILGPU kernels see it. Q, K, V and the output are packed contiguous
/// ([B, Hq, Lq, D], [B, Hkv, Lk, D], [B, Hkv, Lk, Dv], [B, Hq, Lq, Dv]) by the host when it copies them to the device;
/// bias and keep-mask keep their broadcast shape [B|1, Hq|1, Lq|1, Lk] with stride 0 on broadcast dimensions.
/// Absent tensors are one-element placeholders with their Has* flag off.
/// </summary>
internal struct IlGpuAttentionParams<TStorage> where TStorage : unmanaged
{
    public int Batch, QueryHeads, KvHeads, QueryLength, KeyLength, HeadDim, ValueDim;
    public float Scale;

    /// <summary>The positional band: key − query must lie in [BandLo, BandHi].</summary>
    public long BandLo, BandHi;

    public ArrayView<TStorage> Q, K, V, Output;

    /// <summary>[B, Hq, Lq] log-sum-exp, always written.</summary>
    public ArrayView<float> Lse;

    /// <summary>
    /// [B, Hq, Lq] each row's score maximum and sum of e^(s − max), always written: the weights kernel normalises with
    /// them, not with the LSE, which is one float and rounds ln(sum) away at huge scores (a saturated row's LSE is the
    /// maximum itself).
    /// </summary>
    public ArrayView<float> RowMax, RowSum;

    public int HasBias;
    public ArrayView<float> Bias;
    public long BiasStrideB, BiasStrideH, BiasStrideQ;

    public int HasKeep;
    public ArrayView<byte> Keep;
    public long KeepStrideB, KeepStrideH, KeepStrideQ;

    /// <summary>BlockKind per (batch|1, head|1, query block, key block) when HasBlocks is set.</summary>
    public int HasBlocks;
    public ArrayView<byte> Kinds;
    public BlockGrid Blocks;

    /// <summary>Dropout (when HasDropout is set): the <see cref="Dropout.DropoutStream"/>'s words, as plain fields for the kernels.</summary>
    public int HasDropout;
    public uint DropoutKey0, DropoutKey1, DropoutOffset, DropoutThreshold;
    public float DropoutScale;

    /// <summary>Where weights go after dropout (the call's AttentionDropout.InWeights).</summary>
    public int DropoutInWeights;

    public readonly int GroupSize => QueryHeads / KvHeads;

    /// <summary>The dropout factor of pair (b, h, i, j): 1 without dropout, the kept scale or 0 (the same Philox bits as every backend).</summary>
    public readonly float DropoutFactor(int b, int h, int i, int j)
    {
        if (HasDropout == 0) return 1f;
        uint word = Dropout.Philox4x32.Word((uint)j >> 2, (uint)i, (uint)b * (uint)QueryHeads + (uint)h, DropoutOffset, DropoutKey0, DropoutKey1, j & 3);
        return word >= DropoutThreshold ? DropoutScale : 0f;
    }
}
