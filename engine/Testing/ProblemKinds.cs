namespace AttentionEngine.Testing;

/// <summary>How Q, K, V and the output sit in memory (the logical order is always [B, H, S, D]).</summary>
public enum MemoryLayout
{
    /// <summary>Row-major [B, H, S, D].</summary>
    Contiguous,
    /// <summary>FlashAttention's [B, S, H, D] memory seen as [B, H, S, D]: a permuted-stride view.</summary>
    Bshd,
    /// <summary>Row-major with 3 elements of padding after every row of every dimension: non-dense strides.</summary>
    Padded,
}

/// <summary>Which additive bias a problem carries, and its broadcast shape.</summary>
public enum BiasKind
{
    /// <summary>No bias.</summary>
    None,
    /// <summary>[B, Hq, Lq, Lk], N(0, 2²) with about 5% -infinity entries.</summary>
    Full,
    /// <summary>[1, Hq, Lq, Lk] ALiBi-like: -slope_h · |i - j| plus noise.</summary>
    PerHead,
    /// <summary>[B, 1, 1, Lk] key padding: 0 on valid keys, -infinity past each batch's length.</summary>
    KeyPadding,
    /// <summary>[Lq, Lk] (rank 2, shared by every batch and head) with about 5% -infinity entries.</summary>
    Shared2D,
    /// <summary>
    /// [B, 1, Lq, Lk] Hugging Face-style padding with a finite huge negative value (float.MinValue, -1e30 or -1e9,
    /// drawn per problem) instead of -infinity, on padded keys and on whole padded query rows: the keys stay visible
    /// by the rules, and rows whose every key is padded have an LSE near the value itself.
    /// </summary>
    HugePadding,
}

/// <summary>Which boolean keep-mask a problem carries, and its broadcast shape.</summary>
public enum KeepMaskKind
{
    /// <summary>No keep-mask.</summary>
    None,
    /// <summary>[B, Hq, Lq, Lk] random, with some query rows and some key columns hidden entirely.</summary>
    Random,
    /// <summary>[B, 1, 1, Lk]: keys past each batch's valid length hidden (a batch may have none valid).</summary>
    KeyPadding,
    /// <summary>[Lq, Lk] random, shared by every batch and head.</summary>
    Shared2D,
}

/// <summary>A sliding window as <see cref="Mask.SlidingWindow"/> takes it.</summary>
public sealed record WindowSpec(int? Left, int? Right, CausalAlignment Alignment)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"window({Left?.ToString() ?? "inf"},{Right?.ToString() ?? "inf"},{(Alignment == CausalAlignment.TopLeft ? "TL" : "BR")})";
}
