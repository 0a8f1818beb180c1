namespace AttentionEngine;

/// <summary>
/// A change to each scaled score, written as code (FlexAttention's score_mod): ALiBi, soft-capping, relative-position
/// biases. Applied to scale · (q · k) before the additive bias and the masks; on a struct passed as a generic type
/// argument, so it is inlined into the kernel (and <see cref="IdentityScore"/> costs nothing). It must be a pure
/// function of its arguments and the struct's fields.
/// </summary>
public interface IScoreMod
{
    /// <summary>The new score of (query, key) in (batch, head), given the scaled score <paramref name="score"/>.</summary>
    float Apply(float score, int batch, int head, int query, int key);

    /// <summary>∂Apply/∂score at <paramref name="score"/>: what the backward pass multiplies the score gradient by.</summary>
    float Derivative(float score, int batch, int head, int query, int key);
}

/// <summary>No change: the kernels compile it away.</summary>
public readonly struct IdentityScore : IScoreMod
{
    /// <inheritdoc/>
    public float Apply(float score, int batch, int head, int query, int key) => score;
    /// <inheritdoc/>
    public float Derivative(float score, int batch, int head, int query, int key) => 1;
}
