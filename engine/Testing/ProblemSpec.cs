namespace AttentionEngine.Testing;

/// <summary>
/// A complete, printable description of one attention test problem: sizes, layout, masks, scale and how the values
/// are drawn. Small and immutable so FsCheck can generate and shrink it; <see cref="AttentionProblem{T}.Create"/>
/// turns it into tensors, the same values for the same spec on every machine.
/// </summary>
public sealed record ProblemSpec
{
    /// <summary>Batch size B.</summary>
    public int Batch { get; init; } = 1;
    /// <summary>Query heads Hq (a multiple of <see cref="KvHeads"/>).</summary>
    public int QueryHeads { get; init; } = 1;
    /// <summary>Key/value heads Hkv.</summary>
    public int KvHeads { get; init; } = 1;
    /// <summary>Query length Lq.</summary>
    public int QueryLength { get; init; } = 1;
    /// <summary>Key length Lk.</summary>
    public int KeyLength { get; init; } = 1;
    /// <summary>Head dimension D of Q and K.</summary>
    public int HeadDim { get; init; } = 1;
    /// <summary>Head dimension Dv of V and the output.</summary>
    public int ValueDim { get; init; } = 1;
    /// <summary>Memory layout of every tensor of the problem.</summary>
    public MemoryLayout Layout { get; init; } = MemoryLayout.Contiguous;
    /// <summary>Causal mask alignment, or null for no causal mask.</summary>
    public CausalAlignment? Causal { get; init; }
    /// <summary>Sliding-window mask, or null for none.</summary>
    public WindowSpec? Window { get; init; }
    /// <summary>Which additive bias the problem carries.</summary>
    public BiasKind Bias { get; init; }
    /// <summary>Which boolean keep-mask the problem carries.</summary>
    public KeepMaskKind KeepMask { get; init; }
    /// <summary>Explicit scale, or null for the default 1/sqrt(headDim).</summary>
    public float? Scale { get; init; }
    /// <summary>How Q, K and V are drawn (hostile distributions included).</summary>
    public ValueDistribution Values { get; init; } = ValueDistribution.Normal;
    /// <summary>Dropout on the probabilities; the default is none.</summary>
    public AttentionDropout Dropout { get; init; }
    /// <summary>Seed of every value in the problem's tensors.</summary>
    public int DataSeed { get; init; }

    /// <summary>The sizes as an <see cref="AttentionShape"/>.</summary>
    public AttentionShape Shape => new(Batch, QueryHeads, KvHeads, QueryLength, KeyLength, HeadDim, ValueDim);

    /// <summary>The positional mask this spec describes.</summary>
    public Mask BuildMask()
    {
        var mask = Mask.None;
        if (Causal is { } alignment) mask &= Mask.Causal(alignment);
        if (Window is { } w) mask &= Mask.SlidingWindow(w.Left, w.Right, w.Alignment);
        return mask;
    }

    /// <summary>Multiply-adds of one forward: a rough cost, used to keep generated suites inside their time budget.</summary>
    public double Cost => (double)Batch * QueryHeads * QueryLength * KeyLength * (HeadDim + ValueDim);

    /// <summary>The features this problem exercises, for per-feature reports ("plain" when none).</summary>
    public IReadOnlyList<string> Features()
    {
        var features = new List<string>();
        if (Causal is not null) features.Add("causal");
        if (Window is not null) features.Add("window");
        if (Bias != BiasKind.None) features.Add("bias");
        if (KeepMask != KeepMaskKind.None) features.Add("keep-mask");
        if (KvHeads < QueryHeads) features.Add("gqa");
        if (ValueDim != HeadDim) features.Add("dv!=d");
        if (Layout != MemoryLayout.Contiguous) features.Add("strided");
        if (Values is ValueDistribution.Large or ValueDistribution.Outliers) features.Add("hostile values");
        if (Dropout.IsActive) features.Add("dropout");
        if (features.Count == 0) features.Add("plain");
        return features;
    }

    /// <summary>Throws when the spec cannot describe a problem (for hand-written or deserialised specs).</summary>
    public void Validate()
    {
        foreach (var (name, value) in new[] { (nameof(Batch), Batch), (nameof(QueryHeads), QueryHeads), (nameof(KvHeads), KvHeads),
                     (nameof(QueryLength), QueryLength), (nameof(KeyLength), KeyLength), (nameof(HeadDim), HeadDim), (nameof(ValueDim), ValueDim) })
            if (value < 1) throw new ArgumentOutOfRangeException(name, value, $"{name} must be at least 1.");
        if (QueryHeads % KvHeads != 0)
            throw new ArgumentException($"QueryHeads {QueryHeads} is not a multiple of KvHeads {KvHeads}.", nameof(KvHeads));
    }

    /// <inheritdoc/>
    public override string ToString()
    {
        var parts = new List<string>
        {
            $"B{Batch} Hq{QueryHeads} Hkv{KvHeads} Lq{QueryLength} Lk{KeyLength} D{HeadDim} Dv{ValueDim}",
            Layout.ToString().ToLowerInvariant(),
        };
        if (Causal is { } c) parts.Add(c == CausalAlignment.TopLeft ? "causal(TL)" : "causal(BR)");
        if (Window is not null) parts.Add(Window.ToString());
        if (Bias != BiasKind.None) parts.Add($"bias:{Bias}");
        if (KeepMask != KeepMaskKind.None) parts.Add($"keep:{KeepMask}");
        parts.Add(Scale is { } s ? $"scale:{s:R}" : "scale:default");
        parts.Add($"values:{Values}");
        if (Dropout.IsActive)
            parts.Add($"dropout:{Dropout.Probability:R}/seed {Dropout.Seed}/offset {Dropout.Offset}{(Dropout.InWeights ? "/in-weights" : "")}");
        parts.Add($"seed:{DataSeed}");
        return string.Join(" ", parts);
    }
}
