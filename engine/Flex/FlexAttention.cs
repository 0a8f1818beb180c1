using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// Attention with a <see cref="BlockMask{TMask}"/> and/or a score functor (FlexAttention in C#): the functor types are
/// generic arguments, so the CPU kernel is compiled once per (mask, score) pair with both inlined. Combines with every
/// <see cref="AttentionOptions"/> mask (positional, keep-mask, bias): a key must pass all of them.
/// It is an <see cref="IAttentionForward"/>, so the testing toolkit checks it like any kernel.
/// </summary>
public sealed class FlexAttention<TMask, TScore> : IAttentionForward where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    internal FlexAttention(BlockMask<TMask>? blockMask, TScore scoreMod, AttentionBackend? backend)
    {
        BlockMask = blockMask;
        ScoreMod = scoreMod;
        Backend = backend ?? Attention.Backends.FirstOrDefault(b => b.SupportsFunctors && b.IsAvailable)
            ?? throw new NotSupportedException("No available backend runs block masks and functors.");
        if (!Backend.SupportsFunctors)
            throw new NotSupportedException($"Backend {Backend.Name} does not run block masks or mask/score functors; Cpu, IlGpu and Reference do.");
    }

    /// <summary>The block mask the kernels skip by and evaluate the mask functor with; null for no mask.</summary>
    public BlockMask<TMask>? BlockMask { get; }
    /// <summary>The score functor applied to every scaled score.</summary>
    public TScore ScoreMod { get; }
    /// <summary>The backend every call of this object runs on.</summary>
    public AttentionBackend Backend { get; }
    /// <summary>The backend's name with "+flex", for logs and benchmark tables.</summary>
    public string Name => $"{Backend.Name}+flex";

    /// <inheritdoc cref="Attention.Forward{T}(System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.TensorSpan{T}, in AttentionOptions)"/>
    public void Forward<T>(ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, TensorSpan<T> output,
        scoped in AttentionOptions options = default) where T : unmanaged =>
        Backend.ForwardFlex(q, k, v, output, options, BlockMask, ScoreMod);

    /// <summary>
    /// Gradients of this attention (see <see cref="Attention.Backward{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{float}, ReadOnlyTensorSpan{T}, TensorSpan{T}, TensorSpan{T}, TensorSpan{T}, in AttentionOptions, TensorSpan{float})"/>): the block mask decides visibility as in
    /// the forward, and the score functor's <see cref="IScoreMod.Derivative"/> carries the chain rule.
    /// </summary>
    public void Backward<T>(ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, ReadOnlyTensorSpan<T> output,
        ReadOnlyTensorSpan<float> lse, ReadOnlyTensorSpan<T> dOutput, TensorSpan<T> dQ, TensorSpan<T> dK, TensorSpan<T> dV,
        scoped in AttentionOptions options = default, TensorSpan<float> dBias = default) where T : unmanaged =>
        Backend.BackwardFlex(q, k, v, output, lse, dOutput, dQ, dK, dV, options, dBias, BlockMask, ScoreMod);
}

/// <summary>Creates <see cref="FlexAttention{TMask, TScore}"/>s (type arguments inferred).</summary>
public static class FlexAttention
{
    /// <summary>A block mask and a score functor; the backend defaults to the first that runs functors (Cpu).</summary>
    public static FlexAttention<TMask, TScore> Create<TMask, TScore>(BlockMask<TMask> blockMask, TScore scoreMod, AttentionBackend? backend = null)
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod =>
        new(blockMask ?? throw new ArgumentNullException(nameof(blockMask)), scoreMod, backend);

    /// <summary>A block mask alone.</summary>
    public static FlexAttention<TMask, IdentityScore> Create<TMask>(BlockMask<TMask> blockMask, AttentionBackend? backend = null)
        where TMask : struct, IMaskMod =>
        new(blockMask ?? throw new ArgumentNullException(nameof(blockMask)), default, backend);

    /// <summary>A score functor alone (every pair visible unless the options mask it).</summary>
    public static FlexAttention<KeepAll, TScore> WithScore<TScore>(TScore scoreMod, AttentionBackend? backend = null)
        where TScore : struct, IScoreMod => new(null, scoreMod, backend);
}
