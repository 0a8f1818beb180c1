using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu;

namespace AttentionEngine;

public sealed unsafe partial class MultiHeadAttention<TWeight>
{
    /// <summary>A gradients holder shaped for this layer (reuse it across backward calls).</summary>
    public MultiHeadAttentionGradients CreateGradients() => new(_heads, _kvHeads, _d, _e, _gateWidth, _config.Bias);

    /// <summary>
    /// The backward pass of self-attention: given ∂loss/∂output for <paramref name="input"/>, writes ∂loss/∂input and the
    /// gradients of every parameter (projections, biases, gate). The forward is recomputed (nothing is kept between
    /// calls); attention's own backward recomputes its probabilities from the saved log-sum-exp, as FlashAttention does.
    /// </summary>
    /// <param name="input">[batch, S, EmbedDim], as given to the forward.</param>
    /// <param name="dOutput">∂loss/∂output, [batch, S, EmbedDim].</param>
    /// <param name="dInput">∂loss/∂input, [batch, S, EmbedDim] (written).</param>
    /// <param name="gradients">Parameter gradients (overwritten), from <see cref="CreateGradients"/>.</param>
    /// <param name="options">As for the forward: mask, key padding, rotary offset, scale, threads. Weights destinations are
    /// refused (the backward returns none).</param>
    /// <exception cref="ArgumentException">shapes that do not fit, gradients of another layer's shape, or weights destinations.</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    public void Backward<T>(ReadOnlyTensorSpan<T> input, ReadOnlyTensorSpan<T> dOutput, TensorSpan<T> dInput, MultiHeadAttentionGradients gradients,
        scoped in MultiHeadAttentionOptions options = default) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(gradients);
        ElementTypes.ThrowIfUnsupported<T>();
        if (!_projectionsLoaded) throw new InvalidOperationException("The projection weights are not loaded: call LoadPyTorch or Load first.");
        if (_gateWidth > 0 && !_gateLoaded) throw new InvalidOperationException("This layer is gated but its gate weights are not loaded: call LoadGate first.");
        if (!_fused)
            throw new ArgumentException($"This layer's KeyDim ({_config.KeyInputDim}) or ValueDim ({_config.ValueInputDim}) differs from EmbedDim ({_e}); self-attention's backward needs all three equal.", nameof(input));
        if (options.Weights.Rank != 0 || options.AverageWeights.Rank != 0)
            throw new ArgumentException("The backward pass returns no attention weights: leave options.Weights and options.AverageWeights unset.", nameof(options));
        if (gradients.Query.Length != _heads * _d * _e || gradients.Key.Length != _kvWidth * _e || gradients.Gate.Length != _gateWidth * _e
            || gradients.OutputBias.Length != (_config.Bias ? _e : 0))
            throw new ArgumentException("gradients was made for a layer of another shape; use this layer's CreateGradients().", nameof(gradients));
        var shape = ModuleCall.Validate(input, input, input, dInput, options, _config, self: true);
        ModuleCall.Validate(dOutput, dOutput, dOutput, dInput, default, _config, self: true);
        if (dOutput.Lengths[0] != input.Lengths[0] || dOutput.Lengths[1] != input.Lengths[1])
            throw new ArgumentException($"dOutput is [{string.Join(", ", dOutput.Lengths.ToArray())}]; expected [{input.Lengths[0]}, {input.Lengths[1]}, {_e}] like input.", nameof(dOutput));
        int batch = shape.Batch, length = shape.QueryLength, hd = _heads * _d, width = _queryRows + 2 * _kvWidth;
        long n = (long)batch * length;
        int? threads = options.MaxDegreeOfParallelism;

        // Scratch, in floats: X and dY as dense float [N, E]; projections P and their gradient dP [N, width]; attention
        // output, gated output and its gradient [N, H·D]; LSE [B, H, L]; dX [N, E]; the keep mask (bytes).
        long keepFloats = options.KeyPadding.Rank == 0 ? 0 : (n + 3) / 4;
        float* x = ModuleScratch.Rent(n * (3 * _e + 2 * width + 3 * hd) + (long)batch * _heads * length + keepFloats);
        float* dy = x + n * _e, dx = dy + n * _e, p = dx + n * _e, dp = p + n * width;
        float* attention = dp + n * width, gated = attention + n * hd, dGated = gated + n * hd, lse = dGated + n * hd;
        bool* keep = (bool*)(lse + (long)batch * _heads * length);
        ModuleCall.CopyTokens(input, x, _e);
        ModuleCall.CopyTokens(dOutput, dy, _e);
        var xMatrix = MatrixView<float>.Over(ref *x, (nint)n, _e, _e, 1);
        var dyMatrix = MatrixView<float>.Over(ref *dy, (nint)n, _e, _e, 1);

        // Forward again: projections, rotary, attention (with its LSE), gate.
        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, width, _e, _e, 1);
        MatMul.Run(xMatrix, inputWeights.Transposed(), MatrixView<float>.Over(ref *p, (nint)n, width, width, 1), _inputBias, threads, CpuIsa.Auto);
        var table = RotaryReaching(options.PositionOffset + length);
        var layout = _config.Rotary?.Layout ?? RotaryLayout.Interleaved;
        if (table is not null)
            for (int b = 0; b < batch; b++)
            {
                table.Apply(p + (long)b * length * width, width, length, _heads, _d, options.PositionOffset, layout);
                table.Apply(p + (long)b * length * width + _queryRows, width, length, _kvHeads, _d, options.PositionOffset, layout);
            }
        if (keepFloats > 0) ModuleCall.InvertPadding(options.KeyPadding, keep, batch, length);
        nint pReach = (nint)(n * width), aReach = (nint)(n * hd);
        var heads4 = (ReadOnlySpan<nint>)[batch, _heads, length, _d];
        var kvHeads4 = (ReadOnlySpan<nint>)[batch, _kvHeads, length, _d];
        nint[] projected = [(nint)length * width, _d, width, 1], dense = [(nint)length * hd, _d, hd, 1];
        var attentionOptions = new AttentionOptions
        {
            Scale = options.Scale, Mask = options.Mask, MaxDegreeOfParallelism = threads,
            KeepMask = keepFloats > 0 ? TensorLayout.ReadOnlyView(new ReadOnlySpan<bool>(keep, (int)n), [batch, 1, 1, length], [length, 0, 0, 1]) : default,
        };
        var q = TensorLayout.View(p, pReach, heads4, projected);
        var k = TensorLayout.View(p + _queryRows, pReach - _queryRows, kvHeads4, projected);
        var v = TensorLayout.View(p + _queryRows + _kvWidth, pReach - _queryRows - _kvWidth, kvHeads4, projected);
        var o = TensorLayout.View(attention, aReach, heads4, dense);
        var lseView = TensorLayout.View(lse, (nint)batch * _heads * length, [batch, _heads, length], [(nint)_heads * length, length, 1]);
        CpuBackend.Default.Forward<float>(q, k, v, o, new AttentionOptions
        {
            Scale = attentionOptions.Scale, Mask = attentionOptions.Mask, MaxDegreeOfParallelism = threads, KeepMask = attentionOptions.KeepMask, Lse = lseView,
        });
        new Span<float>(attention, (int)(n * hd)).CopyTo(new Span<float>(gated, (int)(n * hd)));
        if (_gateWidth > 0) ApplyGate(gated, p + hd, width, n);

        // Output projection: dGated = dY · W_o, ∂W_o = dYᵀ · gated, ∂b_o = Σ dY.
        var outputWeights = MatrixView<TWeight>.Over(ref *_outputWeights.Pointer, _e, hd, hd, 1);
        MatMul.Run(dyMatrix, outputWeights, MatrixView<float>.Over(ref *dGated, (nint)n, hd, hd, 1), ReadOnlySpan<TWeight>.Empty, threads, CpuIsa.Auto);
        MatMul.Run(dyMatrix.Transposed(), MatrixView<float>.Over(ref *gated, (nint)n, hd, hd, 1),
            MatrixView<float>.Over(ref gradients.Output[0], _e, hd, hd, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        if (_config.Bias) ModuleCall.ColumnSums(dy, n, _e, _e, gradients.OutputBias);

        // Gate: dGated becomes ∂attention, and the gate logits' gradient goes to dP's gate columns.
        new Span<float>(dp, (int)(n * width)).Clear();
        if (_gateWidth > 0) GateBackward(attention, dGated, p + hd, dp + hd, width, n);

        // Attention backward, into dP's Q, K and V columns; then rotary back.
        var dO = TensorLayout.View(dGated, aReach, heads4, dense);
        var dq = TensorLayout.View(dp, pReach, heads4, projected);
        var dk = TensorLayout.View(dp + _queryRows, pReach - _queryRows, kvHeads4, projected);
        var dv = TensorLayout.View(dp + _queryRows + _kvWidth, pReach - _queryRows - _kvWidth, kvHeads4, projected);
        CpuBackend.Default.Backward<float>(q, k, v, o, lseView, dO, dq, dk, dv, attentionOptions);
        if (table is not null)
            for (int b = 0; b < batch; b++)
            {
                table.ApplyInverse(dp + (long)b * length * width, width, length, _heads, _d, options.PositionOffset, layout);
                table.ApplyInverse(dp + (long)b * length * width + _queryRows, width, length, _kvHeads, _d, options.PositionOffset, layout);
            }

        // Input projections: dX = dP · W_in, ∂W_in = dPᵀ · X (per block of rows: Q, gate, K, V), ∂b_in = Σ dP.
        var dpMatrix = MatrixView<float>.Over(ref *dp, (nint)n, width, width, 1);
        MatMul.Run(dpMatrix, inputWeights, MatrixView<float>.Over(ref *dx, (nint)n, _e, _e, 1), ReadOnlySpan<TWeight>.Empty, threads, CpuIsa.Auto);
        ModuleCall.WriteTokens(dx, dInput, _e);
        var dpT = dpMatrix.Transposed();
        MatMul.Run(dpT.RowRange(0, hd), xMatrix, MatrixView<float>.Over(ref gradients.Query[0], hd, _e, _e, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        if (_gateWidth > 0)
            MatMul.Run(dpT.RowRange(hd, _gateWidth), xMatrix, MatrixView<float>.Over(ref gradients.Gate[0], _gateWidth, _e, _e, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        MatMul.Run(dpT.RowRange(_queryRows, _kvWidth), xMatrix, MatrixView<float>.Over(ref gradients.Key[0], _kvWidth, _e, _e, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        MatMul.Run(dpT.RowRange(_queryRows + _kvWidth, _kvWidth), xMatrix, MatrixView<float>.Over(ref gradients.Value[0], _kvWidth, _e, _e, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        if (_config.Bias)
        {
            ModuleCall.ColumnSums(dp, n, hd, width, gradients.QueryBias);
            if (_gateWidth > 0) ModuleCall.ColumnSums(dp + hd, n, _gateWidth, width, gradients.GateBias);
            ModuleCall.ColumnSums(dp + _queryRows, n, _kvWidth, width, gradients.KeyBias);
            ModuleCall.ColumnSums(dp + _queryRows + _kvWidth, n, _kvWidth, width, gradients.ValueBias);
        }
    }

    /// <summary>
    /// Through gated = attention ⊙ σ(z): dGated becomes ∂attention = dGated ⊙ σ(z) (in place), and ∂z = Σ dGated ⊙
    /// attention ⊙ σ(z)(1 − σ(z)) over each gate's elements goes to <paramref name="dLogits"/>.
    /// </summary>
    private void GateBackward(float* attention, float* dGated, float* logits, float* dLogits, nint stride, long tokens)
    {
        int hd = _heads * _d;
        bool headwise = _config.Gate!.Kind == GateKind.Headwise;
        for (long t = 0; t < tokens; t++)
        {
            float* a = attention + t * hd, g = dGated + t * hd, z = logits + t * stride, dz = dLogits + t * stride;
            for (int n = 0; n < _gatedHeads.Length; n++)
            {
                int head = _gatedHeads[n] * _d;
                if (headwise)
                {
                    float s = Sigmoid(z[n]), sum = 0;
                    for (int d = 0; d < _d; d++)
                    {
                        sum += g[head + d] * a[head + d];
                        g[head + d] *= s;
                    }
                    dz[n] = sum * s * (1 - s);
                }
                else
                    for (int d = 0; d < _d; d++)
                    {
                        float s = Sigmoid(z[(nint)n * _d + d]);
                        dz[(nint)n * _d + d] = g[head + d] * a[head + d] * s * (1 - s);
                        g[head + d] *= s;
                    }
            }
        }
    }
}
