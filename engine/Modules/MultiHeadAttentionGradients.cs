namespace AttentionEngine;

/// <summary>
/// Gradients of a <see cref="MultiHeadAttention{TWeight}"/> layer's parameters, in float and in the layouts
/// <see cref="MultiHeadAttention{TWeight}.Load"/> and <see cref="MultiHeadAttention{TWeight}.LoadGate"/> take ([out, in]
/// row-major). Make one with <see cref="MultiHeadAttention{TWeight}.CreateGradients"/> and reuse it: each backward
/// call overwrites it.
/// </summary>
public sealed class MultiHeadAttentionGradients
{
    internal MultiHeadAttentionGradients(int heads, int kvHeads, int headDim, int embedDim, int keyDim, int valueDim, int gateWidth, bool bias)
    {
        int hd = heads * headDim, kv = kvHeads * headDim;
        Query = new float[hd * embedDim];
        Key = new float[kv * keyDim];
        Value = new float[kv * valueDim];
        Output = new float[embedDim * hd];
        Gate = new float[gateWidth * embedDim];
        QueryBias = new float[bias ? hd : 0];
        KeyBias = new float[bias ? kv : 0];
        ValueBias = new float[bias ? kv : 0];
        OutputBias = new float[bias ? embedDim : 0];
        GateBias = new float[bias ? gateWidth : 0];
    }

    /// <summary>∂loss/∂W_q, [Heads·HeadDim, EmbedDim].</summary>
    public float[] Query { get; }
    /// <summary>∂loss/∂W_k, [KvHeads·HeadDim, KeyDim].</summary>
    public float[] Key { get; }
    /// <summary>∂loss/∂W_v, [KvHeads·HeadDim, ValueDim].</summary>
    public float[] Value { get; }
    /// <summary>∂loss/∂W_o, [EmbedDim, Heads·HeadDim].</summary>
    public float[] Output { get; }
    /// <summary>∂loss/∂W_g, [gate width, EmbedDim] (empty without a gate).</summary>
    public float[] Gate { get; }
    /// <summary>∂loss/∂b_q (empty without biases).</summary>
    public float[] QueryBias { get; }
    /// <summary>∂loss/∂b_k (empty without biases).</summary>
    public float[] KeyBias { get; }
    /// <summary>∂loss/∂b_v (empty without biases).</summary>
    public float[] ValueBias { get; }
    /// <summary>∂loss/∂b_o (empty without biases).</summary>
    public float[] OutputBias { get; }
    /// <summary>∂loss/∂b_g (empty without biases or gate).</summary>
    public float[] GateBias { get; }
}
