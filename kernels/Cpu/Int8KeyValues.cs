using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Int8 K [B, Hkv, Lk, D] and V [B, Hkv, Lk, Dv] with one float scale per token ([B, Hkv, Lk, 1] views): element
/// (b, h, j, c) of K is K[b, h, j, c] · KScale[b, h, j, 0], rounded to float. Scales are validated finite and small
/// enough that every dequantised element is finite. Inactive by default.
/// </summary>
internal readonly struct Int8KeyValues
{
    public RawStrided4<sbyte> K { get; init; }
    public RawStrided4<sbyte> V { get; init; }
    public RawStrided4<float> KScale { get; init; }
    public RawStrided4<float> VScale { get; init; }

    public bool IsActive => !K.IsEmpty;
}
