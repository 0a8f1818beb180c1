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
        CheckTrainingForward(activations, options);
        var shape = ModuleCall.Validate(input, input, input, output, options, _config, self: true);
        int batch = shape.Batch, length = shape.QueryLength, width = _queryRows + 2 * _kvWidth;
        long n = (long)batch * length;
        bool padding = options.KeyPadding.Rank != 0;
        float* saved = activations.Reserve(BackwardBuffers.SavedFloats(this, n, n, width, 0, batch, length, padding));
        var buffers = new BackwardBuffers(this, n, n, width, 0, batch, length, padding, saved, forwardOnly: true);
        SelfRecompute(input, buffers, batch, length, options);
        ProjectOut(buffers.Gated, batch, length, output, options.MaxDegreeOfParallelism);
        activations.MarkFilled(cross: false, batch, length, length, _weightsVersion, options);
    }

    /// <summary>
    /// Cross-attention forward for training: the same output as
    /// <see cref="Forward{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, in MultiHeadAttentionOptions)"/>,
    /// and the activations the matching backward needs, kept in <paramref name="activations"/> (what it held before is replaced).
    /// </summary>
    /// <param name="query">[batch, Lq, EmbedDim].</param>
    /// <param name="key">[batch, Lk, KeyDim].</param>
    /// <param name="value">[batch, Lk, ValueDim].</param>
    /// <param name="output">[batch, Lq, EmbedDim].</param>
    /// <param name="activations">From this layer's <see cref="CreateActivations"/>.</param>
    /// <param name="options">Mask, key padding, rotary offsets, scale, dropout, threads; weights destinations are refused.</param>
    /// <exception cref="ArgumentException">shapes that do not fit, activations of another layer, or weights destinations.</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="activations"/> was disposed.</exception>
    public void Forward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value, TensorSpan<T> output,
        MultiHeadAttentionActivations activations, scoped in MultiHeadAttentionOptions options = default) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        CheckTrainingForward(activations, options);
        var shape = ModuleCall.Validate(query, key, value, output, options, _config, self: false);
        int batch = shape.Batch, lq = shape.QueryLength, lk = shape.KeyLength;
        long nq = (long)batch * lq, nk = (long)batch * lk;
        bool padding = options.KeyPadding.Rank != 0;
        float* saved = activations.Reserve(BackwardBuffers.SavedFloats(this, nq, nk, _queryRows, 2 * _kvWidth, batch, lk, padding));
        var buffers = new BackwardBuffers(this, nq, nk, _queryRows, 2 * _kvWidth, batch, lk, padding, saved, forwardOnly: true);
        CrossRecompute(query, key, value, buffers, batch, lq, lk, options);
        ProjectOut(buffers.Gated, batch, lq, output, options.MaxDegreeOfParallelism);
        activations.MarkFilled(cross: true, batch, lq, lk, _weightsVersion, options);
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
        CheckSaved(activations, gradients, options, cross: false);
        int batch = activations.Batch, length = activations.Length, width = _queryRows + 2 * _kvWidth;
        RequireLengths(dOutput.Lengths, nameof(dOutput), batch, length, _e);
        RequireLengths(dInput.Lengths, nameof(dInput), batch, length, _e);
        ModuleCall.Validate(dOutput, dOutput, dOutput, dInput, options, _config, self: true); // strides and the key padding's shape
        RequireSameSettings(activations, options);
        long n = (long)batch * length;
        bool padding = options.KeyPadding.Rank != 0;
        var buffers = new BackwardBuffers(this, n, n, width, 0, batch, length, padding, activations.Pointer);
        if (padding) RequireSamePadding(options.KeyPadding, buffers.Keep, batch, length);
        SelfGradients(buffers, dOutput, dInput, gradients, batch, length, options);
    }

    /// <summary>
    /// The backward pass of cross-attention from a training forward's <paramref name="activations"/>: the same gradients,
    /// bit for bit, as the recomputing cross-attention <c>Backward</c> given that forward's inputs, without running the
    /// projections and attention forward again. The activations are only read.
    /// </summary>
    /// <param name="activations">Filled by this layer's cross-attention training forward, with no load of weights since.</param>
    /// <param name="dOutput">∂loss/∂output, [batch, Lq, EmbedDim].</param>
    /// <param name="dQuery">∂loss/∂query, [batch, Lq, EmbedDim] (written).</param>
    /// <param name="dKey">∂loss/∂key, [batch, Lk, KeyDim] (written).</param>
    /// <param name="dValue">∂loss/∂value, [batch, Lk, ValueDim] (written).</param>
    /// <param name="gradients">Parameter gradients (overwritten), from <see cref="CreateGradients"/>.</param>
    /// <param name="options">The forward's mask, key padding, rotary offsets, scale and dropout (checked); threads may differ.</param>
    /// <exception cref="ArgumentException">activations not filled by this layer's cross-attention training forward, or stale;
    /// options that differ from the forward's; shapes that do not fit; gradients of another layer's shape.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="activations"/> was disposed.</exception>
    public void Backward<T>(MultiHeadAttentionActivations activations, ReadOnlyTensorSpan<T> dOutput, TensorSpan<T> dQuery, TensorSpan<T> dKey, TensorSpan<T> dValue,
        MultiHeadAttentionGradients gradients, scoped in MultiHeadAttentionOptions options = default) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        CheckSaved(activations, gradients, options, cross: true);
        int batch = activations.Batch, lq = activations.Length, lk = activations.KeyLength;
        RequireLengths(dOutput.Lengths, nameof(dOutput), batch, lq, _e);
        RequireLengths(dQuery.Lengths, nameof(dQuery), batch, lq, _e);
        RequireLengths(dKey.Lengths, nameof(dKey), batch, lk, _config.KeyInputDim);
        RequireLengths(dValue.Lengths, nameof(dValue), batch, lk, _config.ValueInputDim);
        ModuleCall.Validate(dOutput, dKey, dValue, dQuery, options, _config, self: false); // strides and the key padding's shape
        RequireSameSettings(activations, options);
        bool padding = options.KeyPadding.Rank != 0;
        var buffers = new BackwardBuffers(this, (long)batch * lq, (long)batch * lk, _queryRows, 2 * _kvWidth, batch, lk, padding, activations.Pointer);
        if (padding) RequireSamePadding(options.KeyPadding, buffers.Keep, batch, lk);
        CrossGradients(buffers, dOutput, dQuery, dKey, dValue, gradients, batch, lq, lk, options);
    }

    private static void RequireLengths(scoped ReadOnlySpan<nint> lengths, string name, int batch, int length, int width)
    {
        if (lengths.Length != 3 || lengths[0] != batch || lengths[1] != length || lengths[2] != width)
            throw new ArgumentException($"{name} is [{string.Join(", ", lengths.ToArray())}]; the saved forward needs [{batch}, {length}, {width}].", name);
    }

    private void CheckTrainingForward(MultiHeadAttentionActivations activations, scoped in MultiHeadAttentionOptions options)
    {
        CheckActivations(activations);
        RequireLoaded();
        if (options.Weights.Rank != 0 || options.AverageWeights.Rank != 0)
            throw new ArgumentException("The training forward returns no attention weights: leave options.Weights and options.AverageWeights unset (the plain Forward returns them).", nameof(options));
    }

    private void CheckSaved(MultiHeadAttentionActivations activations, MultiHeadAttentionGradients gradients, scoped in MultiHeadAttentionOptions options, bool cross)
    {
        CheckActivations(activations);
        CheckBackward(gradients, options);
        if (!activations.IsFilled)
            throw new ArgumentException("activations holds nothing: fill it with this layer's training Forward(..., activations, options) first.", nameof(activations));
        if (activations.WeightsVersion != _weightsVersion)
            throw new ArgumentException("activations were saved before this layer's weights were last loaded; run the training forward again.", nameof(activations));
        if (activations.IsCrossAttention != cross)
            throw new ArgumentException(cross
                ? "activations were saved by a self-attention forward; use Backward(activations, dOutput, dInput, gradients, options)."
                : "activations were saved by a cross-attention forward; use Backward(activations, dOutput, dQuery, dKey, dValue, gradients, options).", nameof(activations));
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
        if (MultiHeadAttentionActivations.BandOf(options.Mask, saved.Length, saved.KeyLength) != saved.Band) Differs(nameof(options.Mask), saved.Mask, options.Mask);
        if (saved.Scale != options.Scale) Differs(nameof(options.Scale), saved.Scale, options.Scale);
        if (saved.PositionOffset != options.PositionOffset) Differs(nameof(options.PositionOffset), saved.PositionOffset, options.PositionOffset);
        if (saved.IsCrossAttention && saved.KeyPositionOffset != options.KeyPositionOffset)
            Differs(nameof(options.KeyPositionOffset), saved.KeyPositionOffset, options.KeyPositionOffset);
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
