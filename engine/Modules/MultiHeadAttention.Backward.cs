using System.Numerics.Tensors;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu;

namespace AttentionEngine;

public sealed unsafe partial class MultiHeadAttention<TWeight>
{
    /// <summary>A gradients holder shaped for this layer (reuse it across backward calls).</summary>
    public MultiHeadAttentionGradients CreateGradients() =>
        new(_heads, _kvHeads, _d, _e, _config.KeyInputDim, _config.ValueInputDim, _gateWidth, _config.Bias);

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
        RequireSelf(input);
        CheckBackward(gradients, options);
        var shape = ModuleCall.Validate(input, input, input, dInput, options, _config, self: true);
        CheckUpstream(dOutput, input, dInput);
        int batch = shape.Batch, length = shape.QueryLength;
        long n = (long)batch * length;
        var buffers = new BackwardBuffers(this, n, n, _queryRows + 2 * _kvWidth, 0, batch, length, options.KeyPadding.Rank != 0);
        SelfRecompute(input, buffers, batch, length, options);
        SelfGradients(buffers, dOutput, dInput, gradients, batch, length, options);
    }

    /// <summary>
    /// The forward half of a self-attention backward, into <paramref name="buffers"/>' forward regions: the input as
    /// floats, its projections (Q and K rotated), attention's output and LSE, and the gated output.
    /// </summary>
    private void SelfRecompute<T>(scoped in ReadOnlyTensorSpan<T> input, in BackwardBuffers buffers, int batch, int length,
        scoped in MultiHeadAttentionOptions options) where T : unmanaged
    {
        int width = _queryRows + 2 * _kvWidth;
        long n = (long)batch * length;
        ModuleCall.CopyTokens(input, buffers.Query, _e);
        var x = MatrixView<float>.Over(ref *buffers.Query, (nint)n, _e, _e, 1);
        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, width, _e, _e, 1);
        MatMul.Run(x, inputWeights.Transposed(), MatrixView<float>.Over(ref *buffers.Projected, (nint)n, width, width, 1), _inputBias,
            options.MaxDegreeOfParallelism, CpuIsa.Auto);
        float* p = buffers.Projected;
        AttentionRecompute(buffers, p, p + _queryRows, p + _queryRows + _kvWidth, width, width,
            batch, length, length, options.PositionOffset, options.PositionOffset, options);
    }

    /// <summary>The gradient half of a self-attention backward, from the forward regions of <paramref name="buffers"/> (only read).</summary>
    private void SelfGradients<T>(in BackwardBuffers buffers, scoped in ReadOnlyTensorSpan<T> dOutput, scoped in TensorSpan<T> dInput,
        MultiHeadAttentionGradients gradients, int batch, int length, scoped in MultiHeadAttentionOptions options) where T : unmanaged
    {
        int width = _queryRows + 2 * _kvWidth;
        long n = (long)batch * length;
        ModuleCall.CopyTokens(dOutput, buffers.Upstream, _e);
        var x = MatrixView<float>.Over(ref *buffers.Query, (nint)n, _e, _e, 1);
        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, width, _e, _e, 1);
        int? threads = options.MaxDegreeOfParallelism;
        float* p = buffers.Projected, dp = buffers.ProjectedGradient;
        nint reach = (nint)(n * width);
        AttentionGradients(buffers, p, p + _queryRows, p + _queryRows + _kvWidth, width, width, reach - _queryRows, reach - _queryRows - _kvWidth,
            dp, dp + _queryRows, dp + _queryRows + _kvWidth,
            batch, length, length, options.PositionOffset, options.PositionOffset, gradients, options);

        // Input projections: dX = dP · W_in, ∂W_in = dPᵀ · X (per block of rows: Q, gate, K, V), ∂b_in = Σ dP.
        var dpMatrix = MatrixView<float>.Over(ref *dp, (nint)n, width, width, 1);
        MatMul.Run(dpMatrix, inputWeights, MatrixView<float>.Over(ref *buffers.InputGradient, (nint)n, _e, _e, 1), ReadOnlySpan<TWeight>.Empty, threads, CpuIsa.Auto);
        ModuleCall.WriteTokens(buffers.InputGradient, dInput, _e);
        QuerySideGradients(dpMatrix, x, gradients, threads);
        var dpT = dpMatrix.Transposed();
        MatMul.Run(dpT.RowRange(_queryRows, _kvWidth), x, MatrixView<float>.Over(ref gradients.Key[0], _kvWidth, _e, _e, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        MatMul.Run(dpT.RowRange(_queryRows + _kvWidth, _kvWidth), x, MatrixView<float>.Over(ref gradients.Value[0], _kvWidth, _e, _e, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        if (_config.Bias)
        {
            ModuleCall.ColumnSums(dp + _queryRows, n, _kvWidth, width, gradients.KeyBias);
            ModuleCall.ColumnSums(dp + _queryRows + _kvWidth, n, _kvWidth, width, gradients.ValueBias);
        }
    }

    /// <summary>
    /// The backward pass of cross-attention: ∂loss/∂query, ∂loss/∂key, ∂loss/∂value and every parameter's gradient,
    /// for the forward <see cref="Forward{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, in MultiHeadAttentionOptions)"/>.
    /// </summary>
    /// <param name="query">[batch, Lq, EmbedDim].</param>
    /// <param name="key">[batch, Lk, KeyDim].</param>
    /// <param name="value">[batch, Lk, ValueDim].</param>
    /// <param name="dOutput">∂loss/∂output, [batch, Lq, EmbedDim].</param>
    /// <param name="dQuery">∂loss/∂query (written).</param>
    /// <param name="dKey">∂loss/∂key (written).</param>
    /// <param name="dValue">∂loss/∂value (written; when key and value are one tensor, add dKey and dValue).</param>
    /// <param name="gradients">Parameter gradients (overwritten), from <see cref="CreateGradients"/>.</param>
    /// <param name="options">As for the forward; weights destinations are refused.</param>
    /// <exception cref="ArgumentException">shapes that do not fit, gradients of another layer's shape, or weights destinations.</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    public void Backward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value, ReadOnlyTensorSpan<T> dOutput,
        TensorSpan<T> dQuery, TensorSpan<T> dKey, TensorSpan<T> dValue, MultiHeadAttentionGradients gradients, scoped in MultiHeadAttentionOptions options = default)
        where T : unmanaged
    {
        CheckBackward(gradients, options);
        var shape = ModuleCall.Validate(query, key, value, dQuery, options, _config, self: false);
        CheckUpstream(dOutput, query, dQuery);
        RequireSame(dKey, key, nameof(dKey), nameof(key));
        RequireSame(dValue, value, nameof(dValue), nameof(value));
        int batch = shape.Batch, lq = shape.QueryLength, lk = shape.KeyLength;
        var buffers = new BackwardBuffers(this, (long)batch * lq, (long)batch * lk, _queryRows, 2 * _kvWidth, batch, lk, options.KeyPadding.Rank != 0);
        CrossRecompute(query, key, value, buffers, batch, lq, lk, options);
        CrossGradients(buffers, dOutput, dQuery, dKey, dValue, gradients, batch, lq, lk, options);
    }

    /// <summary>The key projection's weights, [Hkv·D, KeyDim].</summary>
    private MatrixView<TWeight> KeyWeights() => _fused
        ? MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1).RowRange(_queryRows, _kvWidth)
        : MatrixView<TWeight>.Over(ref *_keyWeights!.Pointer, _kvWidth, _config.KeyInputDim, _config.KeyInputDim, 1);

    /// <summary>The value projection's weights, [Hkv·D, ValueDim].</summary>
    private MatrixView<TWeight> ValueWeights() => _fused
        ? MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1).RowRange(_queryRows + _kvWidth, _kvWidth)
        : MatrixView<TWeight>.Over(ref *_valueWeights!.Pointer, _kvWidth, _config.ValueInputDim, _config.ValueInputDim, 1);

    /// <summary>
    /// The forward half of a cross-attention backward, into <paramref name="buffers"/>' forward regions: the inputs as
    /// floats, their projections (Q and K rotated), attention's output and LSE, and the gated output.
    /// </summary>
    private void CrossRecompute<T>(scoped in ReadOnlyTensorSpan<T> query, scoped in ReadOnlyTensorSpan<T> key, scoped in ReadOnlyTensorSpan<T> value,
        in BackwardBuffers buffers, int batch, int lq, int lk, scoped in MultiHeadAttentionOptions options) where T : unmanaged
    {
        int ek = _config.KeyInputDim, ev = _config.ValueInputDim;
        long nq = (long)batch * lq, nk = (long)batch * lk;
        float* xk = buffers.KeyInputs, xv = xk + nk * ek;
        ModuleCall.CopyTokens(query, buffers.Query, _e);
        ModuleCall.CopyTokens(key, xk, ek);
        ModuleCall.CopyTokens(value, xv, ev);
        int? threads = options.MaxDegreeOfParallelism;
        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1);
        var wk = KeyWeights();
        var wv = ValueWeights();
        float* pq = buffers.Projected, pkv = buffers.KeyValues;
        nint kvStride = 2 * _kvWidth;
        MatMul.Run(MatrixView<float>.Over(ref *buffers.Query, (nint)nq, _e, _e, 1), inputWeights.RowRange(0, _queryRows).Transposed(),
            MatrixView<float>.Over(ref *pq, (nint)nq, _queryRows, _queryRows, 1), _inputBias.AsSpan(0, _queryRows), threads, CpuIsa.Auto);
        MatMul.Run(MatrixView<float>.Over(ref *xk, (nint)nk, ek, ek, 1), wk.Transposed(), MatrixView<float>.Over(ref *pkv, (nint)nk, _kvWidth, kvStride, 1),
            _inputBias.AsSpan(_queryRows, _kvWidth), threads, CpuIsa.Auto);
        MatMul.Run(MatrixView<float>.Over(ref *xv, (nint)nk, ev, ev, 1), wv.Transposed(), MatrixView<float>.Over(ref pkv[_kvWidth], (nint)nk, _kvWidth, kvStride, 1),
            _inputBias.AsSpan(_queryRows + _kvWidth, _kvWidth), threads, CpuIsa.Auto);
        AttentionRecompute(buffers, pq, pkv, pkv + _kvWidth, _queryRows, kvStride,
            batch, lq, lk, options.PositionOffset, options.KeyPositionOffset, options);
    }

    /// <summary>The gradient half of a cross-attention backward, from the forward regions of <paramref name="buffers"/> (only read).</summary>
    private void CrossGradients<T>(in BackwardBuffers buffers, scoped in ReadOnlyTensorSpan<T> dOutput, scoped in TensorSpan<T> dQuery, scoped in TensorSpan<T> dKey,
        scoped in TensorSpan<T> dValue, MultiHeadAttentionGradients gradients, int batch, int lq, int lk, scoped in MultiHeadAttentionOptions options)
        where T : unmanaged
    {
        int ek = _config.KeyInputDim, ev = _config.ValueInputDim;
        long nq = (long)batch * lq, nk = (long)batch * lk;
        float* xk = buffers.KeyInputs, xv = xk + nk * ek, dxk = buffers.KeyInputGradients, dxv = dxk + nk * ek;
        ModuleCall.CopyTokens(dOutput, buffers.Upstream, _e);
        int? threads = options.MaxDegreeOfParallelism;
        var xq = MatrixView<float>.Over(ref *buffers.Query, (nint)nq, _e, _e, 1);
        var xkMatrix = MatrixView<float>.Over(ref *xk, (nint)nk, ek, ek, 1);
        var xvMatrix = MatrixView<float>.Over(ref *xv, (nint)nk, ev, ev, 1);
        var wqg = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1).RowRange(0, _queryRows);
        var wk = KeyWeights();
        var wv = ValueWeights();
        float* pq = buffers.Projected, pkv = buffers.KeyValues, dpq = buffers.ProjectedGradient, dpkv = buffers.KeyValueGradient;
        nint kvStride = 2 * _kvWidth;
        AttentionGradients(buffers, pq, pkv, pkv + _kvWidth, _queryRows, kvStride, (nint)(nk * kvStride), (nint)(nk * kvStride) - _kvWidth, dpq, dpkv, dpkv + _kvWidth,
            batch, lq, lk, options.PositionOffset, options.KeyPositionOffset, gradients, options);

        var dpqMatrix = MatrixView<float>.Over(ref *dpq, (nint)nq, _queryRows, _queryRows, 1);
        var dpk = MatrixView<float>.Over(ref *dpkv, (nint)nk, _kvWidth, kvStride, 1);
        var dpv = MatrixView<float>.Over(ref dpkv[_kvWidth], (nint)nk, _kvWidth, kvStride, 1);
        MatMul.Run(dpqMatrix, wqg, MatrixView<float>.Over(ref *buffers.InputGradient, (nint)nq, _e, _e, 1), ReadOnlySpan<TWeight>.Empty, threads, CpuIsa.Auto);
        MatMul.Run(dpk, wk, MatrixView<float>.Over(ref *dxk, (nint)nk, ek, ek, 1), ReadOnlySpan<TWeight>.Empty, threads, CpuIsa.Auto);
        MatMul.Run(dpv, wv, MatrixView<float>.Over(ref *dxv, (nint)nk, ev, ev, 1), ReadOnlySpan<TWeight>.Empty, threads, CpuIsa.Auto);
        ModuleCall.WriteTokens(buffers.InputGradient, dQuery, _e);
        ModuleCall.WriteTokens(dxk, dKey, ek);
        ModuleCall.WriteTokens(dxv, dValue, ev);
        QuerySideGradients(dpqMatrix, xq, gradients, threads);
        MatMul.Run(dpk.Transposed(), xkMatrix, MatrixView<float>.Over(ref gradients.Key[0], _kvWidth, ek, ek, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        MatMul.Run(dpv.Transposed(), xvMatrix, MatrixView<float>.Over(ref gradients.Value[0], _kvWidth, ev, ev, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        if (_config.Bias)
        {
            ModuleCall.ColumnSums(dpkv, nk, _kvWidth, kvStride, gradients.KeyBias);
            ModuleCall.ColumnSums(dpkv + _kvWidth, nk, _kvWidth, kvStride, gradients.ValueBias);
        }
    }

    /// <summary>
    /// One backward call's float buffers. The forward regions (the input as floats, the projections, attention's output
    /// and LSE, the gated output, the keep mask) come from the saved memory when given (a training forward's
    /// <see cref="MultiHeadAttentionActivations"/>), else from the thread's module scratch with the gradient regions.
    /// </summary>
    private readonly struct BackwardBuffers
    {
        public readonly float* Query, Upstream, InputGradient, Projected, ProjectedGradient, KeyValues, KeyValueGradient;
        public readonly float* Attention, Gated, GatedGradient, Lse, KeyInputs, KeyInputGradients;
        public readonly bool* Keep;

        /// <param name="queryWidth">Floats per query-side projected row (Q and gate; self-attention: all of Q, gate, K, V).</param>
        /// <param name="keyValueWidth">Floats per key/value projected row in their own buffer (0 for self-attention).</param>
        /// <param name="saved">the forward regions (<see cref="SavedFloats"/> floats), or null to take them from scratch</param>
        /// <param name="forwardOnly">a training forward: no gradient regions (left null), no scratch</param>
        public BackwardBuffers(MultiHeadAttention<TWeight> layer, long queries, long keys, int queryWidth, int keyValueWidth, int batch, int keyLength, bool padding,
            float* saved = null, bool forwardOnly = false)
        {
            int e = layer._e, hd = layer._heads * layer._d;
            long keyInputs = KeyInputFloats(layer, keys, keyValueWidth);
            long gradientFloats = forwardOnly ? 0 : queries * (2 * e + queryWidth + hd) + keys * keyValueWidth + keyInputs;
            long savedFloats = SavedFloats(layer, queries, keys, queryWidth, keyValueWidth, batch, keyLength, padding);
            float* scratch = forwardOnly && saved != null ? null : ModuleScratch.Rent(gradientFloats + (saved == null ? savedFloats : 0));
            float* at = saved != null ? saved : scratch + gradientFloats;
            float* Take(long floats) { float* region = at; at += floats; return region; }
            Query = Take(queries * e);
            Projected = Take(queries * queryWidth);
            KeyValues = Take(keys * keyValueWidth);
            KeyInputs = Take(keyInputs);
            Attention = Take(queries * hd);
            Gated = Take(queries * hd);
            Lse = Take((long)batch * layer._heads * (queries / batch));
            Keep = (bool*)Take(padding ? ((long)batch * keyLength + 3) / 4 : 0);
            if (forwardOnly) return;
            at = scratch;
            Upstream = Take(queries * e);
            InputGradient = Take(queries * e);
            ProjectedGradient = Take(queries * queryWidth);
            GatedGradient = Take(queries * hd);
            KeyValueGradient = Take(keys * keyValueWidth);
            KeyInputGradients = Take(keyInputs);
        }

        /// <summary>Cross-attention's key and value inputs as floats ([B·Lk, KeyDim] then [B·Lk, ValueDim]); none for self-attention.</summary>
        private static long KeyInputFloats(MultiHeadAttention<TWeight> layer, long keys, int keyValueWidth) =>
            keyValueWidth == 0 ? 0 : keys * (layer._config.KeyInputDim + layer._config.ValueInputDim);

        /// <summary>
        /// Floats of the forward regions: the inputs, their projections, attention's and the gate's outputs, the LSE, the
        /// keep mask.
        /// </summary>
        public static long SavedFloats(MultiHeadAttention<TWeight> layer, long queries, long keys, int queryWidth, int keyValueWidth, int batch, int keyLength,
            bool padding) =>
            queries * (layer._e + queryWidth + 2 * layer._heads * layer._d) + keys * keyValueWidth + KeyInputFloats(layer, keys, keyValueWidth)
            + (long)batch * layer._heads * (queries / batch) + (padding ? ((long)batch * keyLength + 3) / 4 : 0);
    }

    /// <summary>
    /// From the projections (Q and gate at <paramref name="q"/>, K, V; rotary not yet applied): rotates Q and K in place,
    /// and recomputes attention's output and LSE and the gated output into <paramref name="buffers"/> (the key padding's
    /// keep mask too).
    /// </summary>
    private void AttentionRecompute(in BackwardBuffers buffers, float* q, float* k, float* v, nint queryStride, nint keyStride,
        int batch, int lq, int lk, long queryOffset, long keyOffset, scoped in MultiHeadAttentionOptions options)
    {
        int hd = _heads * _d;
        long nq = (long)batch * lq;
        var table = RotaryReaching(Math.Max(queryOffset + lq, keyOffset + lk));
        var layout = _config.Rotary?.Layout ?? RotaryLayout.Interleaved;
        if (table is not null)
            for (int b = 0; b < batch; b++)
            {
                table.Apply(q + (long)b * lq * queryStride, queryStride, lq, _heads, _d, queryOffset, layout);
                table.Apply(k + (long)b * lk * keyStride, keyStride, lk, _kvHeads, _d, keyOffset, layout);
            }
        if (options.KeyPadding.Rank != 0) ModuleCall.InvertPadding(options.KeyPadding, buffers.Keep, batch, lk);
        var views = new AttentionViews(this, buffers, q, k, v, queryStride, keyStride, batch, lq, lk, options.KeyPadding.Rank != 0, headMajorKeys: false);
        CpuBackend.Default.Forward<float>(views.Q, views.K, views.V, views.O, new AttentionOptions
        {
            Scale = options.Scale, Mask = options.Mask, MaxDegreeOfParallelism = options.MaxDegreeOfParallelism, KeepMask = views.Keep, Lse = views.Lse,
            Dropout = options.Dropout,
        });
        new Span<float>(buffers.Attention, (int)(nq * hd)).CopyTo(new Span<float>(buffers.Gated, (int)(nq * hd)));
        if (_gateWidth > 0) ApplyGate(buffers.Gated, q + hd, queryStride, nq);
    }

    /// <summary>
    /// From what <see cref="AttentionRecompute"/> left (rotated Q and K, attention's output and LSE, the gated output, the
    /// keep mask; all only read) and ∂loss/∂output: the output projection's and the gate's gradients, and attention's
    /// backward into dQ (and the gate logits' gradient beside it), dK and dV, rotated back. dQ's buffer is cleared here.
    /// </summary>
    private void AttentionGradients(in BackwardBuffers buffers, float* q, float* k, float* v, nint queryStride, nint keyStride, nint keyReach, nint valueReach,
        float* dq, float* dk, float* dv, int batch, int lq, int lk, long queryOffset, long keyOffset, MultiHeadAttentionGradients gradients,
        scoped in MultiHeadAttentionOptions options)
    {
        int hd = _heads * _d;
        long nq = (long)batch * lq;
        int? threads = options.MaxDegreeOfParallelism;

        // Output projection: dGated = dY · W_o, ∂W_o = dYᵀ · gated, ∂b_o = Σ dY.
        var dy = MatrixView<float>.Over(ref *buffers.Upstream, (nint)nq, _e, _e, 1);
        var outputWeights = MatrixView<TWeight>.Over(ref *_outputWeights.Pointer, _e, hd, hd, 1);
        MatMul.Run(dy, outputWeights, MatrixView<float>.Over(ref *buffers.GatedGradient, (nint)nq, hd, hd, 1), ReadOnlySpan<TWeight>.Empty, threads, CpuIsa.Auto);
        MatMul.Run(dy.Transposed(), MatrixView<float>.Over(ref *buffers.Gated, (nint)nq, hd, hd, 1),
            MatrixView<float>.Over(ref gradients.Output[0], _e, hd, hd, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        if (_config.Bias) ModuleCall.ColumnSums(buffers.Upstream, nq, _e, _e, gradients.OutputBias);

        // Gate: dGated becomes ∂attention, and the gate logits' gradient goes beside dQ.
        new Span<float>(dq, (int)(nq * queryStride)).Clear();
        if (_gateWidth > 0) GateBackward(buffers.Attention, buffers.GatedGradient, q + hd, dq + hd, queryStride, nq);

        var views = new AttentionViews(this, buffers, q, k, v, queryStride, keyStride, batch, lq, lk, options.KeyPadding.Rank != 0, headMajorKeys: true);
        var (heads4, kvHeads4) = views.Lengths;
        var dO = TensorLayout.View(buffers.GatedGradient, views.OutputReach, heads4, views.DenseStrides);
        var dqView = TensorLayout.View(dq, views.QueryReach, heads4, views.QueryStrides);
        var dkView = TensorLayout.View(dk, keyReach, kvHeads4, views.KeyStrides);
        var dvView = TensorLayout.View(dv, valueReach, kvHeads4, views.KeyStrides);
        CpuBackend.Default.Backward<float>(views.Q, views.K, views.V, views.O, views.Lse, dO, dqView, dkView, dvView, new AttentionOptions
        {
            Scale = options.Scale, Mask = options.Mask, MaxDegreeOfParallelism = threads, KeepMask = views.Keep, Dropout = options.Dropout,
        });
        if (RotaryReaching(Math.Max(queryOffset + lq, keyOffset + lk)) is { } table)
        {
            var layout = _config.Rotary!.Layout;
            for (int b = 0; b < batch; b++)
            {
                table.ApplyInverse(dq + (long)b * lq * queryStride, queryStride, lq, _heads, _d, queryOffset, layout);
                table.ApplyInverse(dk + (long)b * lk * keyStride, keyStride, lk, _kvHeads, _d, keyOffset, layout);
            }
        }
    }

    /// <summary>
    /// [B, H, L, D] views of one backward call's projections, attention output, LSE and keep mask, in place; for attention's
    /// backward (<c>headMajorKeys</c>) the keys and values are copied head-major into the thread's key/value scratch
    /// (<see cref="HeadMajor"/>).
    /// </summary>
    private readonly ref struct AttentionViews
    {
        public readonly TensorSpan<float> Q, K, V, O, Lse;
        public readonly ReadOnlyTensorSpan<bool> Keep;
        public readonly nint[] QueryStrides, KeyStrides, DenseStrides;
        public readonly nint QueryReach, OutputReach;
        private readonly int _batch, _heads, _kvHeads, _lq, _lk, _d;

        public AttentionViews(MultiHeadAttention<TWeight> layer, in BackwardBuffers buffers, float* q, float* k, float* v, nint queryStride, nint keyStride,
            int batch, int lq, int lk, bool padding, bool headMajorKeys)
        {
            (_batch, _heads, _kvHeads, _lq, _lk, _d) = (batch, layer._heads, layer._kvHeads, lq, lk, layer._d);
            int hd = _heads * _d;
            long nq = (long)batch * lq;
            QueryReach = (nint)(nq * queryStride);
            OutputReach = (nint)(nq * hd);
            QueryStrides = [(nint)lq * queryStride, _d, queryStride, 1];
            KeyStrides = [(nint)lk * keyStride, _d, keyStride, 1];
            DenseStrides = [(nint)lq * hd, _d, hd, 1];
            var (heads4, kvHeads4) = Lengths;
            Keep = padding ? TensorLayout.ReadOnlyView(new ReadOnlySpan<bool>(buffers.Keep, checked(batch * lk)), [batch, 1, 1, lk], [lk, 0, 0, 1]) : default;
            Q = TensorLayout.View(q, QueryReach, heads4, QueryStrides);
            if (headMajorKeys) layer.HeadMajorKeysValues(k, v, keyStride, batch, lk, out K, out V);
            else
            {
                // The floats from a key (or value) block's first element to its last: B·Lk rows of Hkv·D.
                nint reach = (nint)Math.Max(0, ((long)batch * lk - 1) * keyStride + layer._kvWidth);
                K = TensorLayout.View(k, reach, kvHeads4, KeyStrides);
                V = TensorLayout.View(v, reach, kvHeads4, KeyStrides);
            }
            O = TensorLayout.View(buffers.Attention, OutputReach, heads4, DenseStrides);
            Lse = TensorLayout.View(buffers.Lse, (nint)batch * _heads * lq, [batch, _heads, lq], [(nint)_heads * lq, lq, 1]);
        }

        public (nint[] Heads, nint[] KvHeads) Lengths => ([_batch, _heads, _lq, _d], [_batch, _kvHeads, _lk, _d]);
    }

    /// <summary>∂W_q (and ∂W_g) = dPᵀ · X over the query-side columns of dP, and their bias gradients.</summary>
    private void QuerySideGradients(scoped in MatrixView<float> dp, scoped in MatrixView<float> x, MultiHeadAttentionGradients gradients, int? threads)
    {
        int hd = _heads * _d;
        var dpT = dp.Transposed();
        MatMul.Run(dpT.RowRange(0, hd), x, MatrixView<float>.Over(ref gradients.Query[0], hd, _e, _e, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        if (_gateWidth > 0)
            MatMul.Run(dpT.RowRange(hd, _gateWidth), x, MatrixView<float>.Over(ref gradients.Gate[0], _gateWidth, _e, _e, 1), ReadOnlySpan<float>.Empty, threads, CpuIsa.Auto);
        if (_config.Bias)
        {
            fixed (float* origin = &dp.Origin)
            {
                ModuleCall.ColumnSums(origin, dp.Rows, hd, dp.RowStride, gradients.QueryBias);
                if (_gateWidth > 0) ModuleCall.ColumnSums(origin + hd, dp.Rows, _gateWidth, dp.RowStride, gradients.GateBias);
            }
        }
    }

    private void CheckBackward(MultiHeadAttentionGradients gradients, scoped in MultiHeadAttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        RequireLoaded();
        if (options.Weights.Rank != 0 || options.AverageWeights.Rank != 0)
            throw new ArgumentException("The backward pass returns no attention weights: leave options.Weights and options.AverageWeights unset.", nameof(options));
        if (gradients.Query.Length != _heads * _d * _e || gradients.Key.Length != _kvWidth * _config.KeyInputDim
            || gradients.Value.Length != _kvWidth * _config.ValueInputDim || gradients.Gate.Length != _gateWidth * _e
            || gradients.OutputBias.Length != (_config.Bias ? _e : 0))
            throw new ArgumentException("gradients was made for a layer of another shape; use this layer's CreateGradients().", nameof(gradients));
    }

    private void CheckUpstream<T>(scoped in ReadOnlyTensorSpan<T> dOutput, scoped in ReadOnlyTensorSpan<T> input, scoped in TensorSpan<T> dInput) where T : unmanaged
    {
        ModuleCall.Validate(dOutput, dOutput, dOutput, dInput, default, _config, self: true);
        if (dOutput.Lengths[0] != input.Lengths[0] || dOutput.Lengths[1] != input.Lengths[1])
            throw new ArgumentException($"dOutput is [{string.Join(", ", dOutput.Lengths.ToArray())}]; expected [{input.Lengths[0]}, {input.Lengths[1]}, {_e}] like the query input.", nameof(dOutput));
    }

    private static void RequireSame<T>(scoped in TensorSpan<T> gradient, scoped in ReadOnlyTensorSpan<T> input, string gradientName, string inputName) where T : unmanaged
    {
        if (!gradient.Lengths.SequenceEqual(input.Lengths))
            throw new ArgumentException($"{gradientName} is [{string.Join(", ", gradient.Lengths.ToArray())}]; expected [{string.Join(", ", input.Lengths.ToArray())}] like {inputName}.", gradientName);
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
