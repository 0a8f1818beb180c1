using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// The int8 keys and values of a validated call: K [B, Hkv, Lk, D] and V [B, Hkv, Lk, Dv] as int8, with per-token
/// scales as [B, Hkv, Lk, 1] views (finite, in [0, <see cref="QuantizedTensor.MaxScale"/>]). Element (b, h, j, c) of K
/// stands for K[b, h, j, c] · KScale[b, h, j, 0].
/// </summary>
internal readonly ref struct QuantizedKeyValues
{
    public QuantizedKeyValues(ReadOnlyStrided4<sbyte> k, ReadOnlyStrided4<sbyte> v, ReadOnlyStrided4<float> kScale, ReadOnlyStrided4<float> vScale)
    {
        K = k; V = v; KScale = kScale; VScale = vScale;
        IsActive = true;
    }

    public bool IsActive { get; }
    public ReadOnlyStrided4<sbyte> K { get; }
    public ReadOnlyStrided4<sbyte> V { get; }
    public ReadOnlyStrided4<float> KScale { get; }
    public ReadOnlyStrided4<float> VScale { get; }
}
