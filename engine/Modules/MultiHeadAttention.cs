using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu;

namespace AttentionEngine;

/// <summary>
/// A multi-head attention layer on the CPU: input projections on <see cref="MatMul"/>, optional rotary embeddings, the
/// fused attention kernel, an optional sigmoid output gate, and the output projection. Self-attention runs one fused
/// projection GEMM for Q, the gate, K and V; cross-attention projects the query input and the key/value inputs
/// separately (each with its own width, PyTorch's kdim/vdim). Grouped-query (KvHeads &lt; Heads) and multi-query
/// (KvHeads = 1) layers share each key/value head among a group of query heads.
/// </summary>
/// <remarks>
/// Weights live in native memory owned by the layer, in <typeparamref name="TWeight"/> (float, Half or BFloat16,
/// widened to float as the GEMM packs them); activations may be any of the three, with fp32 projections and
/// attention in between. Results are bitwise identical for any thread count. Forward may run concurrently from
/// several threads on one layer (each thread has its own scratch); loading weights while a forward runs is not supported.
/// </remarks>
public sealed unsafe partial class MultiHeadAttention<TWeight> : IDisposable where TWeight : unmanaged
{
    private readonly MultiHeadAttentionConfig _config;
    private readonly int _e, _heads, _kvHeads, _d, _gateWidth, _queryRows, _kvWidth;
    private readonly bool _fused; // K and V weights sit under the query/gate rows in one matrix
    private readonly NativeTensor<TWeight> _inputWeights;   // [query + gate (+ key + value) rows, E]
    private readonly NativeTensor<TWeight>? _keyWeights;    // [Hkv·D, KeyDim] when not fused
    private readonly NativeTensor<TWeight>? _valueWeights;  // [Hkv·D, ValueDim] when not fused
    private readonly NativeTensor<TWeight> _outputWeights;  // [E, H·D]
    private readonly TWeight[] _inputBias, _outputBias;     // zeros when the layer has no bias
    private readonly int[] _gatedHeads;                      // query head of each gate group
    private bool _projectionsLoaded, _gateLoaded;
    private int _weightsVersion; // counts loads, so activations saved before one are refused after it
    private RotaryTable? _rotary;

    /// <summary>A layer of the given shape, with weights to be loaded (<see cref="LoadPyTorch"/>, <see cref="Load"/>, <see cref="LoadGate"/>).</summary>
    /// <exception cref="ArgumentException">an invalid configuration (the message names the setting).</exception>
    public MultiHeadAttention(MultiHeadAttentionConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        ElementTypes.ThrowIfUnsupported<TWeight>();
        config.Validate();
        _config = config;
        (_e, _heads, _kvHeads, _d) = (config.EmbedDim, config.Heads, config.KvHeadCount, config.HeadSize);
        _gateWidth = config.GateWidth;
        _queryRows = _heads * _d + _gateWidth;
        _kvWidth = _kvHeads * _d;
        _fused = config.KeyInputDim == _e && config.ValueInputDim == _e;
        _inputWeights = NativeTensor<TWeight>.Zeros(_queryRows + (_fused ? 2 * _kvWidth : 0), _e);
        if (!_fused)
        {
            _keyWeights = NativeTensor<TWeight>.Zeros(_kvWidth, config.KeyInputDim);
            _valueWeights = NativeTensor<TWeight>.Zeros(_kvWidth, config.ValueInputDim);
        }
        _outputWeights = NativeTensor<TWeight>.Zeros(_e, _heads * _d);
        _inputBias = new TWeight[_queryRows + 2 * _kvWidth];
        _outputBias = new TWeight[_e];
        _gatedHeads = Enumerable.Range(0, _heads).Where(h => config.Gate is not null && (config.Gate.GatedHeads?[h] ?? true)).ToArray();
    }

    /// <summary>The layer's shape.</summary>
    public MultiHeadAttentionConfig Config => _config;

    /// <summary>
    /// Copies PyTorch <c>nn.MultiheadAttention</c> weights: in_proj_weight [3E, E] (q, k, v stacked), in_proj_bias [3E],
    /// out_proj.weight [E, E], out_proj.bias [E]. Needs Heads = KvHeads, HeadDim = E / Heads and kdim = vdim = E, as
    /// PyTorch's packed layout does; biases are required exactly when the layer has them.
    /// </summary>
    /// <exception cref="ArgumentException">a shape that does not match the layer, or a bias given to a bias-free layer (or missing).</exception>
    public void LoadPyTorch(ReadOnlyTensorSpan<TWeight> inProjWeight, ReadOnlySpan<TWeight> inProjBias, ReadOnlyTensorSpan<TWeight> outProjWeight, ReadOnlySpan<TWeight> outProjBias)
    {
        if (_kvHeads != _heads || _heads * _d != _e || !_fused)
            throw new ArgumentException(
                $"PyTorch's packed in_proj_weight needs KvHeads = Heads, HeadDim = EmbedDim / Heads and KeyDim = ValueDim = EmbedDim; this layer has Heads {_heads}, KvHeads {_kvHeads}, HeadDim {_d}, EmbedDim {_e}, KeyDim {_config.KeyInputDim}, ValueDim {_config.ValueInputDim}. Use Load with separate matrices.",
                nameof(inProjWeight));
        var packed = MatrixView<TWeight>.Of(inProjWeight, nameof(inProjWeight));
        RequireShape(packed, 3 * _e, _e, nameof(inProjWeight));
        RequireBias(inProjBias.Length, 3 * _e, nameof(inProjBias));
        var output = MatrixView<TWeight>.Of(outProjWeight, nameof(outProjWeight));
        RequireShape(output, _e, _e, nameof(outProjWeight));
        RequireBias(outProjBias.Length, _e, nameof(outProjBias));
        int hd = _heads * _d;
        CopyRows(packed, 0, hd, _inputWeights, 0);
        CopyRows(packed, hd, _kvWidth, _inputWeights, _queryRows);
        CopyRows(packed, hd + _kvWidth, _kvWidth, _inputWeights, _queryRows + _kvWidth);
        if (_config.Bias)
        {
            inProjBias[..hd].CopyTo(_inputBias);
            inProjBias[hd..].CopyTo(_inputBias.AsSpan(_queryRows));
            outProjBias.CopyTo(_outputBias);
        }
        CopyRows(output, 0, _e, _outputWeights, 0);
        _projectionsLoaded = true;
        _weightsVersion++;
    }

    /// <summary>
    /// Copies separate projection weights in PyTorch's [out, in] layout: wq [Heads·HeadDim, E], wk [KvHeads·HeadDim, KeyDim],
    /// wv [KvHeads·HeadDim, ValueDim], wo [E, Heads·HeadDim]. Biases (one per output row) are required exactly when the
    /// layer has them; pass empty spans otherwise.
    /// </summary>
    /// <exception cref="ArgumentException">a shape that does not match the layer, or a bias given to a bias-free layer (or missing).</exception>
    public void Load(ReadOnlyTensorSpan<TWeight> wq, ReadOnlyTensorSpan<TWeight> wk, ReadOnlyTensorSpan<TWeight> wv, ReadOnlyTensorSpan<TWeight> wo,
        ReadOnlySpan<TWeight> bq = default, ReadOnlySpan<TWeight> bk = default, ReadOnlySpan<TWeight> bv = default, ReadOnlySpan<TWeight> bo = default)
    {
        int hd = _heads * _d;
        var q = MatrixView<TWeight>.Of(wq, nameof(wq));
        var k = MatrixView<TWeight>.Of(wk, nameof(wk));
        var v = MatrixView<TWeight>.Of(wv, nameof(wv));
        var o = MatrixView<TWeight>.Of(wo, nameof(wo));
        RequireShape(q, hd, _e, nameof(wq));
        RequireShape(k, _kvWidth, _config.KeyInputDim, nameof(wk));
        RequireShape(v, _kvWidth, _config.ValueInputDim, nameof(wv));
        RequireShape(o, _e, hd, nameof(wo));
        RequireBias(bq.Length, hd, nameof(bq));
        RequireBias(bk.Length, _kvWidth, nameof(bk));
        RequireBias(bv.Length, _kvWidth, nameof(bv));
        RequireBias(bo.Length, _e, nameof(bo));
        CopyRows(q, 0, hd, _inputWeights, 0);
        CopyRows(k, 0, _kvWidth, _fused ? _inputWeights : _keyWeights!, _fused ? _queryRows : 0);
        CopyRows(v, 0, _kvWidth, _fused ? _inputWeights : _valueWeights!, _fused ? _queryRows + _kvWidth : 0);
        CopyRows(o, 0, _e, _outputWeights, 0);
        if (_config.Bias)
        {
            bq.CopyTo(_inputBias);
            bk.CopyTo(_inputBias.AsSpan(_queryRows));
            bv.CopyTo(_inputBias.AsSpan(_queryRows + _kvWidth));
            bo.CopyTo(_outputBias);
        }
        _projectionsLoaded = true;
        _weightsVersion++;
    }

    /// <summary>
    /// Copies the gate projection: weight [G, E] with G = gated heads (headwise) or gated heads · HeadDim (elementwise),
    /// rows in head order; bias [G] when the layer has biases.
    /// </summary>
    /// <exception cref="InvalidOperationException">the layer has no gate.</exception>
    /// <exception cref="ArgumentException">a shape that does not match.</exception>
    public void LoadGate(ReadOnlyTensorSpan<TWeight> weight, ReadOnlySpan<TWeight> bias = default)
    {
        if (_gateWidth == 0) throw new InvalidOperationException("This layer has no output gate (Config.Gate is null, or no head is gated).");
        var g = MatrixView<TWeight>.Of(weight, nameof(weight));
        RequireShape(g, _gateWidth, _e, nameof(weight));
        RequireBias(bias.Length, _gateWidth, nameof(bias));
        CopyRows(g, 0, _gateWidth, _inputWeights, _heads * _d);
        if (_config.Bias) bias.CopyTo(_inputBias.AsSpan(_heads * _d));
        _gateLoaded = true;
        _weightsVersion++;
    }

    /// <summary>Self-attention: output = layer(input) with queries, keys and values all from <paramref name="input"/> [batch, S, E].</summary>
    /// <param name="input">[batch, S, EmbedDim], any strides.</param>
    /// <param name="output">[batch, S, EmbedDim]; may be the input's own memory (the input is fully read before the output is written).</param>
    /// <param name="options">Mask, key padding, rotary offset, weights destinations, threads.</param>
    /// <exception cref="ArgumentException">a shape that does not match the layer (the message names the tensor).</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    public void Forward<T>(ReadOnlyTensorSpan<T> input, TensorSpan<T> output, scoped in MultiHeadAttentionOptions options = default) where T : unmanaged
    {
        RequireSelf(input);
        Run<T, T>(input, input, input, output, options, self: true);
    }

    /// <summary>Cross-attention: queries from <paramref name="query"/>, keys and values from their own inputs (an encoder's output, another modality).</summary>
    /// <param name="query">[batch, Lq, EmbedDim].</param>
    /// <param name="key">[batch, Lk, KeyDim].</param>
    /// <param name="value">[batch, Lk, ValueDim].</param>
    /// <param name="output">[batch, Lq, EmbedDim].</param>
    /// <param name="options">Mask, key padding, rotary offsets, weights destinations, threads.</param>
    /// <exception cref="ArgumentException">a shape that does not match the layer (the message names the tensor).</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    public void Forward<T>(ReadOnlyTensorSpan<T> query, ReadOnlyTensorSpan<T> key, ReadOnlyTensorSpan<T> value, TensorSpan<T> output,
        scoped in MultiHeadAttentionOptions options = default) where T : unmanaged =>
        Run<T, T>(query, key, value, output, options, self: false);

    private void Run<T, TOut>(scoped in ReadOnlyTensorSpan<T> query, scoped in ReadOnlyTensorSpan<T> key, scoped in ReadOnlyTensorSpan<T> value, scoped in TensorSpan<TOut> output,
        scoped in MultiHeadAttentionOptions options, bool self) where T : unmanaged where TOut : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        RequireLoaded();
        var shape = ModuleCall.Validate(query, key, value, output, options, _config, self);
        int batch = shape.Batch, lq = shape.QueryLength, lk = shape.KeyLength, hd = _heads * _d;
        int? threads = options.MaxDegreeOfParallelism;

        // Scratch, in floats: query-side projections [B·Lq, queryWidth], key/value projections [B·Lk, 2·Hkv·D] (cross only),
        // attention output [B·Lq, H·D], keep mask (bytes), per-head weights when only the average is wanted.
        int queryWidth = self ? _queryRows + 2 * _kvWidth : _queryRows;
        long projected = (long)batch * lq * queryWidth, keyValues = self ? 0 : (long)batch * lk * 2 * _kvWidth;
        long attended = (long)batch * lq * hd, keepFloats = options.KeyPadding.Rank == 0 ? 0 : ((long)batch * lk + 3) / 4;
        bool averageOnly = options.AverageWeights.Rank != 0 && options.Weights.Rank == 0;
        long headWeights = averageOnly ? (long)batch * _heads * lq * lk : 0;
        long total = projected + keyValues + attended + keepFloats + headWeights;
        float* scratch = ModuleScratch.Rent(total);
        float* queries = scratch, kv = queries + projected, attention = kv + keyValues;
        bool* keep = (bool*)(attention + attended);
        float* weightsScratch = attention + attended + keepFloats;

        // 1. Projections: one GEMM per input (self-attention: one for Q, gate, K and V together).
        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1);
        Project(query, inputWeights.RowRange(0, queryWidth), _inputBias.AsSpan(0, queryWidth), queries, queryWidth, threads);
        float* keys = queries + _queryRows, values = keys + _kvWidth;
        nint kvStride = queryWidth;
        if (!self)
        {
            var wk = _fused ? inputWeights.RowRange(_queryRows, _kvWidth)
                : MatrixView<TWeight>.Over(ref *_keyWeights!.Pointer, _kvWidth, _config.KeyInputDim, _config.KeyInputDim, 1);
            var wv = _fused ? inputWeights.RowRange(_queryRows + _kvWidth, _kvWidth)
                : MatrixView<TWeight>.Over(ref *_valueWeights!.Pointer, _kvWidth, _config.ValueInputDim, _config.ValueInputDim, 1);
            Project(key, wk, _inputBias.AsSpan(_queryRows, _kvWidth), kv, 2 * _kvWidth, threads);
            Project(value, wv, _inputBias.AsSpan(_queryRows + _kvWidth, _kvWidth), kv + _kvWidth, 2 * _kvWidth, threads);
            keys = kv;
            values = kv + _kvWidth;
            kvStride = 2 * _kvWidth;
        }

        // 2. Rotary embeddings on the projected queries and keys, per sequence.
        long keyOffset = self ? options.PositionOffset : options.KeyPositionOffset;
        if (RotaryReaching(Math.Max(options.PositionOffset + lq, keyOffset + lk)) is { } table)
        {
            var layout = _config.Rotary!.Layout;
            for (int b = 0; b < batch; b++)
            {
                table.Apply(queries + (long)b * lq * queryWidth, queryWidth, lq, _heads, _d, options.PositionOffset, layout);
                table.Apply(keys + (long)b * lk * kvStride, kvStride, lk, _kvHeads, _d, keyOffset, layout);
            }
        }

        // 3. Attention over [B, H, L, D] views of the projections (no copies), into [B·Lq, H·D].
        if (keepFloats > 0) ModuleCall.InvertPadding(options.KeyPadding, keep, batch, lk);
        long queryReach = projected, keyReach = self ? projected - _queryRows : keyValues;
        var q = TensorLayout.View(queries, (nint)queryReach, [batch, _heads, lq, _d], [(nint)lq * queryWidth, _d, queryWidth, 1]);
        var k = TensorLayout.View(keys, (nint)keyReach, [batch, _kvHeads, lk, _d], [(nint)lk * kvStride, _d, kvStride, 1]);
        var v = TensorLayout.View(values, (nint)(keyReach - _kvWidth), [batch, _kvHeads, lk, _d], [(nint)lk * kvStride, _d, kvStride, 1]);
        var o = TensorLayout.View(attention, (nint)attended, [batch, _heads, lq, _d], [(nint)lq * hd, _d, hd, 1]);
        var weights = averageOnly ? TensorLayout.View(weightsScratch, (nint)headWeights, [batch, _heads, lq, lk], [(nint)_heads * lq * lk, (nint)lq * lk, lk, 1]) : options.Weights;
        CpuBackend.Default.Forward<float>(q, k, v, o, new AttentionOptions
        {
            Scale = options.Scale, Mask = options.Mask, MaxDegreeOfParallelism = threads, Weights = weights, Dropout = options.Dropout,
            KeepMask = keepFloats > 0 ? TensorLayout.ReadOnlyView(new ReadOnlySpan<bool>(keep, batch * lk), [batch, 1, 1, lk], [lk, 0, 0, 1]) : default,
        });
        if (options.AverageWeights.Rank != 0) ModuleCall.AverageHeads(weights, options.AverageWeights);

        // 4. The gate, then the output projection.
        Finish(attention, queries, queryWidth, batch, lq, output, threads);
    }

    /// <summary>
    /// The keys and values at <paramref name="keys"/> and <paramref name="values"/> (rows <paramref name="stride"/> floats
    /// apart, rotary applied) as dense [B, Hkv, Lk, D] tensors in this thread's key/value scratch (<see cref="HeadMajor"/>),
    /// for attention's backward.
    /// </summary>
    private void HeadMajorKeysValues(float* keys, float* values, nint stride, int batch, int lk, out TensorSpan<float> k, out TensorSpan<float> v)
    {
        long floats = (long)batch * lk * _kvWidth;
        float* dense = ModuleScratch.Rent(2 * floats, ModuleScratch.KeyValueSlot);
        k = HeadMajor.Gather(keys, stride, batch, lk, _kvHeads, _d, dense);
        v = HeadMajor.Gather(values, stride, batch, lk, _kvHeads, _d, dense + floats);
    }

    /// <summary>The gate (from the query-side projections) on the attention output [B·L, H·D], then output = attention · W_oᵀ + b_o.</summary>
    private void Finish<T>(float* attention, float* queries, nint queryWidth, int batch, int length, scoped in TensorSpan<T> output, int? threads) where T : unmanaged
    {
        if (_gateWidth > 0) ApplyGate(attention, queries + _heads * _d, queryWidth, (long)batch * length);
        ProjectOut(attention, batch, length, output, threads);
    }

    /// <summary>output = gated attention output [B·L, H·D] · W_oᵀ + b_o, one GEMM per block of sequences that forms one matrix.</summary>
    private void ProjectOut<T>(float* attention, int batch, int length, scoped in TensorSpan<T> output, int? threads) where T : unmanaged
    {
        int hd = _heads * _d;
        var attentionMatrix = MatrixView<float>.Over(ref *attention, (nint)batch * length, hd, hd, 1);
        var outputWeights = MatrixView<TWeight>.Over(ref *_outputWeights.Pointer, _e, hd, hd, 1);
        var blocks = SequenceBlocks.Of(output.Lengths, output.Strides);
        ref T outputOrigin = ref output.GetPinnableReference();
        for (int n = 0; n < blocks.Count; n++)
        {
            var destination = MatrixView<T>.Over(ref Unsafe.Add(ref outputOrigin, n * blocks.BlockStride), blocks.Rows, _e, blocks.RowStride, blocks.ColumnStride);
            MatMul.Run(attentionMatrix.RowRange(n * blocks.Rows, blocks.Rows), outputWeights.Transposed(), destination, _outputBias, threads, CpuIsa.Auto);
        }
    }

    /// <summary>The rotary table reaching position <paramref name="end"/> (null when the layer has no rotary embeddings).</summary>
    private RotaryTable? RotaryReaching(long end)
    {
        if (_config.Rotary is not { } rotary) return null;
        var table = RotaryTable.Reaching(Volatile.Read(ref _rotary), end, _config.RotaryDims / 2, rotary.Base);
        Volatile.Write(ref _rotary, table);
        return table;
    }

    /// <summary>Rows [B·L, width) of <paramref name="destination"/> = input tokens · weightᵀ + bias, one GEMM per block of sequences that forms one matrix.</summary>
    private static void Project<T>(scoped in ReadOnlyTensorSpan<T> input, scoped in MatrixView<TWeight> weight, ReadOnlySpan<TWeight> bias, float* destination, nint destinationStride, int? threads)
        where T : unmanaged
    {
        var w = weight.Transposed();
        var blocks = SequenceBlocks.Of(input.Lengths, input.Strides);
        ref T origin = ref Unsafe.AsRef(in input.GetPinnableReference());
        for (int n = 0; n < blocks.Count; n++)
        {
            var tokens = MatrixView<T>.Over(ref Unsafe.Add(ref origin, n * blocks.BlockStride), blocks.Rows, w.Rows, blocks.RowStride, blocks.ColumnStride);
            var target = MatrixView<float>.Over(ref destination[n * blocks.Rows * destinationStride], blocks.Rows, w.Columns, destinationStride, 1);
            MatMul.Run(tokens, w, target, bias, threads, CpuIsa.Auto);
        }
    }

    /// <summary>attention[t, head h] *= sigmoid(gate logits) for every gated head, headwise or elementwise.</summary>
    private void ApplyGate(float* attention, float* gates, nint gateStride, long tokens)
    {
        int hd = _heads * _d;
        bool headwise = _config.Gate!.Kind == GateKind.Headwise;
        for (long t = 0; t < tokens; t++)
        {
            float* row = attention + t * hd, logits = gates + t * gateStride;
            for (int g = 0; g < _gatedHeads.Length; g++)
            {
                float* head = row + (nint)_gatedHeads[g] * _d;
                if (headwise)
                {
                    float s = Sigmoid(logits[g]);
                    for (int d = 0; d < _d; d++) head[d] *= s;
                }
                else
                    for (int d = 0; d < _d; d++) head[d] *= Sigmoid(logits[(nint)g * _d + d]);
            }
        }
    }

    /// <summary>Self-attention reads keys and values from the query input, so the layer's KeyDim and ValueDim must be EmbedDim.</summary>
    private void RequireSelf<T>(scoped in ReadOnlyTensorSpan<T> input) where T : unmanaged
    {
        if (!_fused)
            throw new ArgumentException($"This layer's KeyDim ({_config.KeyInputDim}) or ValueDim ({_config.ValueInputDim}) differs from EmbedDim ({_e}); self-attention needs all three equal. Call the cross-attention overload.", nameof(input));
    }

    /// <exception cref="InvalidOperationException">weights (or a gated layer's gate weights) not loaded yet.</exception>
    private void RequireLoaded()
    {
        if (!_projectionsLoaded) throw new InvalidOperationException("The projection weights are not loaded: call LoadPyTorch or Load first.");
        if (_gateWidth > 0 && !_gateLoaded) throw new InvalidOperationException("This layer is gated but its gate weights are not loaded: call LoadGate first.");
    }

    internal static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    private static void RequireShape(scoped in MatrixView<TWeight> matrix, int rows, int columns, string name)
    {
        if (matrix.Rows != rows || matrix.Columns != columns)
            throw new ArgumentException($"{name} is {matrix.Shape}; expected [{rows}, {columns}] for this layer.", name);
    }

    private void RequireBias(int length, int expected, string name)
    {
        if (_config.Bias && length != expected)
            throw new ArgumentException($"{name} has {length} elements; this layer has biases, so it needs {expected}.", name);
        if (!_config.Bias && length != 0)
            throw new ArgumentException($"{name} has {length} elements, but this layer has no biases (Config.Bias is false); pass an empty span.", name);
    }

    private static void CopyRows(scoped in MatrixView<TWeight> source, int firstRow, int rows, NativeTensor<TWeight> destination, int destinationRow)
    {
        int columns = (int)source.Columns;
        TWeight* target = destination.Pointer + (nint)destinationRow * columns;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                target[(nint)r * columns + c] = Unsafe.Add(ref source.Origin, (firstRow + r) * source.RowStride + c * source.ColumnStride);
    }

    /// <summary>Frees the weights' native memory.</summary>
    public void Dispose()
    {
        _inputWeights.Dispose();
        _keyWeights?.Dispose();
        _valueWeights?.Dispose();
        _outputWeights.Dispose();
    }
}
