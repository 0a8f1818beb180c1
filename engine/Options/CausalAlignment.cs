namespace AttentionEngine;

/// <summary>
/// How query positions line up with key positions when Lq != Lk (they coincide when Lq == Lk).
/// </summary>
public enum CausalAlignment
{
    /// <summary>Query i sits at key position i (PyTorch's <c>is_causal</c>): causal query i sees keys j &lt;= i.</summary>
    TopLeft,

    /// <summary>
    /// The last query sits at the last key (FlashAttention 2.1+, decoding with a KV cache):
    /// causal query i sees keys j &lt;= i + (Lk - Lq).
    /// </summary>
    BottomRight,
}
