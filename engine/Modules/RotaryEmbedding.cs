namespace AttentionEngine;

/// <summary>Which dimensions of a head rotate together under rotary position embeddings.</summary>
public enum RotaryLayout
{
    /// <summary>Adjacent pairs (0, 1), (2, 3), ...: the original RoFormer and GPT-J/LLaMA-reference layout.</summary>
    Interleaved,
    /// <summary>Halves (i, i + R/2): the GPT-NeoX / Hugging Face "rotate_half" layout.</summary>
    HalfSplit,
}

/// <summary>
/// Rotary position embeddings (RoPE) on queries and keys: pair i of the first <see cref="Dimensions"/> dimensions of
/// each head at position p turns by the angle p · Base^(−2i / Dimensions). Angles, cosines and sines are computed in
/// float64 and rounded once, so a position far into a long context rotates as accurately as position 1.
/// </summary>
/// <param name="Layout">Which dimensions pair up.</param>
/// <param name="Base">The frequency base (10,000 in most models; larger for long-context variants).</param>
/// <param name="Dimensions">Rotated dimensions per head, even; null means all of the head (partial rotary when smaller).</param>
public sealed record RotaryEmbedding(RotaryLayout Layout, double Base = 10_000, int? Dimensions = null);

/// <summary>How a sigmoid gate scales the attention output before the output projection.</summary>
public enum GateKind
{
    /// <summary>One gate value per head and token, scaling the whole head's output.</summary>
    Headwise,
    /// <summary>One gate value per output element (head dimension) and token.</summary>
    Elementwise,
}

/// <summary>
/// Gated attention output ("Gated Attention for Large Language Models", 2025): per token, gate = sigmoid(x · W_gᵀ + b_g)
/// from the layer's (query) input x, multiplied into the attention output of the gated heads before W_o.
/// </summary>
/// <param name="Kind">Headwise (one gate per head) or elementwise (one per head dimension).</param>
/// <param name="GatedHeads">Which query heads are gated; null means all (plain, gated and mixed layers are one module).</param>
public sealed record OutputGate(GateKind Kind, IReadOnlyList<bool>? GatedHeads = null);

/// <summary>The shape of a <see cref="MultiHeadAttention{TWeight}"/> layer.</summary>
public sealed record MultiHeadAttentionConfig
{
    /// <summary>Model width E: the query input's last dimension and the output's.</summary>
    public required int EmbedDim { get; init; }

    /// <summary>Query heads H.</summary>
    public required int Heads { get; init; }

    /// <summary>Key/value heads (GQA when fewer than <see cref="Heads"/>, MQA at 1); null means <see cref="Heads"/>. Must divide Heads.</summary>
    public int? KvHeads { get; init; }

    /// <summary>Dimension of each head; null means EmbedDim / Heads (which must then divide).</summary>
    public int? HeadDim { get; init; }

    /// <summary>Last dimension of the key input (PyTorch's kdim); null means EmbedDim.</summary>
    public int? KeyDim { get; init; }

    /// <summary>Last dimension of the value input (PyTorch's vdim); null means EmbedDim.</summary>
    public int? ValueDim { get; init; }

    /// <summary>Whether the projections have biases (PyTorch's bias=True default).</summary>
    public bool Bias { get; init; } = true;

    /// <summary>Rotary position embeddings on queries and keys; null means none.</summary>
    public RotaryEmbedding? Rotary { get; init; }

    /// <summary>Sigmoid output gate; null means none.</summary>
    public OutputGate? Gate { get; init; }

    internal int KvHeadCount => KvHeads ?? Heads;
    internal int HeadSize => HeadDim ?? EmbedDim / Heads;
    internal int KeyInputDim => KeyDim ?? EmbedDim;
    internal int ValueInputDim => ValueDim ?? EmbedDim;
    internal int RotaryDims => Rotary?.Dimensions ?? HeadSize;

    /// <summary>Gate outputs per token: one per gated head (headwise) or HeadDim per gated head (elementwise).</summary>
    internal int GateWidth => Gate is null ? 0 : GatedHeadCount * (Gate.Kind == GateKind.Headwise ? 1 : HeadSize);

    internal int GatedHeadCount => Gate is null ? 0 : Gate.GatedHeads?.Count(g => g) ?? Heads;

    /// <exception cref="ArgumentException">a dimension that is not positive, heads that do not divide, a bad rotary or gate setting.</exception>
    internal void Validate()
    {
        static void Positive(int value, string name)
        {
            if (value < 1) throw new ArgumentException($"{name} is {value}; expected at least 1.", name);
        }
        Positive(EmbedDim, nameof(EmbedDim));
        Positive(Heads, nameof(Heads));
        Positive(KvHeadCount, nameof(KvHeads));
        if (HeadDim is null && EmbedDim % Heads != 0)
            throw new ArgumentException($"Heads ({Heads}) does not divide EmbedDim ({EmbedDim}); set HeadDim explicitly or choose a divisor.", nameof(Heads));
        Positive(HeadSize, nameof(HeadDim));
        Positive(KeyInputDim, nameof(KeyDim));
        Positive(ValueInputDim, nameof(ValueDim));
        if (Heads % KvHeadCount != 0)
            throw new ArgumentException($"KvHeads ({KvHeadCount}) does not divide Heads ({Heads}); each key/value head serves a whole group of query heads.", nameof(KvHeads));
        if (Rotary is not null)
        {
            if (RotaryDims < 2 || RotaryDims % 2 != 0 || RotaryDims > HeadSize)
                throw new ArgumentException($"Rotary.Dimensions is {RotaryDims}; expected an even number from 2 to HeadDim ({HeadSize}).", "Rotary.Dimensions");
            if (!(Rotary.Base > 1) || double.IsInfinity(Rotary.Base))
                throw new ArgumentException($"Rotary.Base is {Rotary.Base}; expected a finite number above 1.", "Rotary.Base");
        }
        if (Gate?.GatedHeads is { } gated && gated.Count != Heads)
            throw new ArgumentException($"Gate.GatedHeads has {gated.Count} entries; expected one per query head ({Heads}).", "Gate.GatedHeads");
    }
}
