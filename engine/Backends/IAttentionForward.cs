using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// Anything that computes an attention forward. Implement it to check your own kernel with
/// AttentionEngine.Testing's AttentionInvariants and ToleranceRule exactly as ours are checked.
/// </summary>
public interface IAttentionForward
{
    /// <summary>Short name for reports.</summary>
    string Name { get; }

    /// <summary>Computes attention of q, k, v into output under options (see <see cref="Attention.Forward{T}(System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.TensorSpan{T}, in AttentionOptions)"/>).</summary>
    void Forward<T>(
        ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, TensorSpan<T> output,
        scoped in AttentionOptions options) where T : unmanaged;
}
