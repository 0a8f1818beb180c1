namespace AttentionEngine;

/// <summary>Distributions of generated tensor values, from benign to hostile.</summary>
public enum ValueDistribution
{
    /// <summary>N(0, 1).</summary>
    Normal,
    /// <summary>Uniform on [-1, 1).</summary>
    Uniform,
    /// <summary>N(0, 30^2): logits in the thousands, where a naive exp overflows.</summary>
    Large,
    /// <summary>N(0, 1) + N(0, 100^2) * Bernoulli(0.001): rare huge outliers, as in real activations.</summary>
    Outliers,
    /// <summary>
    /// N(0, 1), with a fifth of the elements at ±(0.5 to 0.99) × the storage type's largest finite value: sums of
    /// such values overflow although their averages do not. Generated problems use it for V only (Q and K stay N(0, 1)).
    /// </summary>
    NearRangeEdge,
}
