using System.Numerics.Tensors;

namespace AttentionEngine;

public sealed unsafe partial class MultiHeadAttention<TWeight>
{
    /// <summary>An empty holder for a training forward's saved activations (reuse it step after step).</summary>
    public MultiHeadAttentionActivations CreateActivations() => new(this);

    /// <summary>
    /// Self-attention forward for training: the same output as
    /// <see cref="Forward{T}(ReadOnlyTensorSpan{T}, TensorSpan{T}, in MultiHeadAttentionOptions)"/>, and the activations
    /// <see cref="Backward{T}(MultiHeadAttentionActivations, ReadOnlyTensorSpan{T}, TensorSpan{T}, MultiHeadAttentionGradients, in MultiHeadAttentionOptions)"/>
    /// needs, kept in <paramref name="activations"/> (what it held before is replaced).
    /// </summary>
    /// <param name="input">[batch, S, EmbedDim], any strides.</param>
    /// <param name="output">[batch, S, EmbedDim]; may be the input's own memory.</param>
    /// <param name="activations">From this layer's <see cref="CreateActivations"/>.</param>
    /// <param name="options">Mask, key padding, rotary offset, scale, dropout, threads. Weights destinations are refused
    /// (take them from the plain forward).</param>
    /// <exception cref="ArgumentException">shapes that do not fit, activations of another layer, or weights destinations.</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="activations"/> was disposed.</exception>
    public void Forward<T>(ReadOnlyTensorSpan<T> input, TensorSpan<T> output, MultiHeadAttentionActivations activations,
        scoped in MultiHeadAttentionOptions options = default) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        RequireSelf(input);
        CheckActivations(activations);
        RequireLoaded();
        if (options.Weights.Rank != 0 || options.AverageWeights.Rank != 0)
            throw new ArgumentException("The training forward returns no attention weights: leave options.Weights and options.AverageWeights unset (the plain Forward returns them).", nameof(options));
        var shape = ModuleCall.Validate(input, input, input, output, options, _config, self: true);
        int batch = shape.Batch, length = shape.QueryLength, width = _queryRows + 2 * _kvWidth;
        long n = (long)batch * length;
        bool padding = options.KeyPadding.Rank != 0;
        float* saved = activations.Reserve(BackwardBuffers.SavedFloats(this, n, width, batch, length, padding));
        var buffers = new BackwardBuffers(this, n, n, width, 0, batch, length, padding, saved, forwardOnly: true);
        SelfRecompute(input, buffers, batch, length, options);
        ProjectOut(buffers.Gated, batch, length, output, options.MaxDegreeOfParallelism);
        activations.MarkFilled(batch, length, _weightsVersion, options.Mask, options.Scale, options.PositionOffset, options.Dropout, padding);
    }

    /// <summary>
    /// The backward pass of self-attention from a training forward's <paramref name="activations"/>: the same gradients,
    /// bit for bit, as <see cref="Backward{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, MultiHeadAttentionGradients, in MultiHeadAttentionOptions)"/>
    /// given that forward's input, without running the projections and attention forward again. The activations are
    /// only read: the call can be repeated.
    /// </summary>
    /// <param name="activations">Filled by this layer's training forward, with no load of weights since.</param>
    /// <param name="dOutput">∂loss/∂output, [batch, S, EmbedDim] of that forward.</param>
    /// <param name="dInput">∂loss/∂input, [batch, S, EmbedDim] (written).</param>
    /// <param name="gradients">Parameter gradients (overwritten), from <see cref="CreateGradients"/>.</param>
    /// <param name="options">The forward's mask, key padding, rotary offset, scale and dropout (checked: they decide what
    /// was saved); threads may differ. Weights destinations are refused.</param>
    /// <exception cref="ArgumentException">activations not filled by this layer's training forward, or stale (weights loaded
    /// since); options that differ from the forward's; shapes that do not fit; gradients of another layer's shape.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="activations"/> was disposed.</exception>
    public void Backward<T>(MultiHeadAttentionActivations activations, ReadOnlyTensorSpan<T> dOutput, TensorSpan<T> dInput, MultiHeadAttentionGradients gradients,
        scoped in MultiHeadAttentionOptions options = default) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        CheckActivations(activations);
        CheckBackward(gradients, options);
        if (!activations.IsFilled)
            throw new ArgumentException("activations holds nothing: fill it with this layer's training Forward(input, output, activations, options) first.", nameof(activations));
        if (activations.WeightsVersion != _weightsVersion)
            throw new ArgumentException("activations were saved before this layer's weights were last loaded; run the training forward again.", nameof(activations));
        int batch = activations.Batch, length = activations.Length, width = _queryRows + 2 * _kvWidth;
        var shape = ModuleCall.Validate(dOutput, dOutput, dOutput, dInput, default, _config, self: true);
        if (shape.Batch != batch || shape.QueryLength != length)
            throw new ArgumentException($"dOutput is [{string.Join(", ", dOutput.Lengths.ToArray())}]; the saved forward was [{batch}, {length}, {_e}].", nameof(dOutput));
        ModuleCall.Validate(dOutput, dOutput, dOutput, dInput, options, _config, self: true); // the key padding's shape
        RequireSameSettings(activations, options);
        long n = (long)batch * length;
        bool padding = options.KeyPadding.Rank != 0;
        var buffers = new BackwardBuffers(this, n, n, width, 0, batch, length, padding, activations.Pointer);
        if (padding) RequireSamePadding(options.KeyPadding, buffers.Keep, batch, length);
        SelfGradients(buffers, dOutput, dInput, gradients, batch, length, options);
    }

    private void RequireSelf<T>(scoped in ReadOnlyTensorSpan<T> input) where T : unmanaged
    {
        if (!_fused)
            throw new ArgumentException($"This layer's KeyDim ({_config.KeyInputDim}) or ValueDim ({_config.ValueInputDim}) differs from EmbedDim ({_e}); the training forward is for self-attention, which needs all three equal. Use the cross-attention Backward, which recomputes the forward.", nameof(input));
    }

    private void CheckActivations(MultiHeadAttentionActivations activations)
    {
        ArgumentNullException.ThrowIfNull(activations);
        if (!ReferenceEquals(activations.Layer, this))
            throw new ArgumentException("activations was made by another layer; use this layer's CreateActivations().", nameof(activations));
    }

    /// <summary>The settings that decided the saved forward must come again: a backward under others would differentiate another function.</summary>
    private static void RequireSameSettings(MultiHeadAttentionActivations saved, scoped in MultiHeadAttentionOptions options)
    {
        static void Differs(string what, object? forward, object? now) =>
            throw new ArgumentException($"options.{what} is {now ?? "null"} but the training forward ran with {forward ?? "null"}; pass the forward's options.", nameof(options));
        if (MultiHeadAttentionActivations.BandOf(options.Mask, saved.Length) != saved.Band) Differs(nameof(options.Mask), saved.Mask, options.Mask);
        if (saved.Scale != options.Scale) Differs(nameof(options.Scale), saved.Scale, options.Scale);
        if (saved.PositionOffset != options.PositionOffset) Differs(nameof(options.PositionOffset), saved.PositionOffset, options.PositionOffset);
        if (saved.Dropout != options.Dropout) Differs(nameof(options.Dropout), saved.Dropout, options.Dropout);
        if (saved.Padding != (options.KeyPadding.Rank != 0))
            Differs(nameof(options.KeyPadding), saved.Padding ? "a key padding mask" : "none", options.KeyPadding.Rank != 0 ? "a key padding mask" : "none");
    }

    /// <summary>The key padding must mark the same keys as the forward's (kept as its keep mask).</summary>
    private static void RequireSamePadding(scoped in ReadOnlyTensorSpan<bool> keyPadding, bool* savedKeep, int batch, int length)
    {
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < length; j++)
                if (keyPadding[b, j] == savedKeep[(long)b * length + j])
                    throw new ArgumentException($"options.KeyPadding differs from the training forward's at [{b}, {j}]; pass the forward's options.", "options");
    }
}
