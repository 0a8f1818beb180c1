using System.Numerics.Tensors;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu;

namespace AttentionEngine;

public sealed unsafe partial class MultiHeadAttention<TWeight>
{
    private static readonly Mask CausalToTheEnd = Mask.Causal(CausalAlignment.BottomRight);

    /// <summary>
    /// Incremental self-attention: the new tokens of each sequence (a prompt chunk, or one token per decode step) attend
    /// to everything the cache holds for that sequence plus themselves, causally; their keys and values are appended.
    /// Positions (rotary) continue from each sequence's cached length, and the last new token is aligned with the last
    /// key by construction, so a prefill followed by decode steps computes what one causal forward over the whole
    /// sequence computes.
    /// </summary>
    /// <param name="input">[batch, new tokens, EmbedDim]: the same number of new tokens for every row.</param>
    /// <param name="output">[batch, new tokens, EmbedDim].</param>
    /// <param name="cache">The sequences' cache (its KvHeads and HeadDim must be the layer's).</param>
    /// <param name="options">Scale, threads and <see cref="MultiHeadAttentionOptions.CacheSequences"/>; the mask is causal by
    /// construction, so Mask, KeyPadding, position offsets and weights destinations must be left unset.</param>
    /// <exception cref="ArgumentException">a shape that does not fit, a sequence that would overflow (nothing is written), or an option the cache path does not take.</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    public void Forward<T, TCache>(ReadOnlyTensorSpan<T> input, TensorSpan<T> output, KeyValueCache<TCache> cache, scoped in MultiHeadAttentionOptions options = default)
        where T : unmanaged where TCache : unmanaged
    {
        ArgumentNullException.ThrowIfNull(cache);
        ElementTypes.ThrowIfUnsupported<T>();
        if (!_projectionsLoaded) throw new InvalidOperationException("The projection weights are not loaded: call LoadPyTorch or Load first.");
        if (_gateWidth > 0 && !_gateLoaded) throw new InvalidOperationException("This layer is gated but its gate weights are not loaded: call LoadGate first.");
        if (!_fused)
            throw new ArgumentException($"This layer's KeyDim ({_config.KeyInputDim}) or ValueDim ({_config.ValueInputDim}) differs from EmbedDim ({_e}); the cache serves self-attention, which needs all three equal.", nameof(cache));
        if (cache.KvHeads != _kvHeads || cache.HeadDim != _d)
            throw new ArgumentException($"cache has {cache.KvHeads} KV heads of dimension {cache.HeadDim}; this layer needs {_kvHeads} of {_d}.", nameof(cache));
        if (options.Mask is not null || options.KeyPadding.Rank != 0 || options.Weights.Rank != 0 || options.AverageWeights.Rank != 0
            || options.PositionOffset != 0 || options.KeyPositionOffset != 0)
            throw new ArgumentException(
                "With a KV cache the attention is causal to the end of each sequence and positions continue from the cache: leave Mask, KeyPadding, Weights, AverageWeights, PositionOffset and KeyPositionOffset unset.", nameof(options));
        var shape = ModuleCall.Validate(input, input, input, output, default, _config, self: true);
        int batch = shape.Batch, length = shape.QueryLength;
        if (options.MaxDegreeOfParallelism is < 1)
            throw new ArgumentException($"options.MaxDegreeOfParallelism is {options.MaxDegreeOfParallelism}; expected at least 1 (or null).", "options.MaxDegreeOfParallelism");
        var sequences = options.CacheSequences;
        if (sequences.IsEmpty && batch > cache.Sequences)
            throw new ArgumentException($"input has batch {batch}; the cache holds {cache.Sequences} sequences (set options.CacheSequences to map rows to sequences).", nameof(input));
        if (!sequences.IsEmpty && sequences.Length != batch)
            throw new ArgumentException($"options.CacheSequences has {sequences.Length} entries; expected one per batch row ({batch}).", "options.CacheSequences");
        for (int b = 0; b < batch; b++)
        {
            int sequence = sequences.IsEmpty ? b : sequences[b];
            if ((uint)sequence >= (uint)cache.Sequences)
                throw new ArgumentException($"options.CacheSequences[{b}] is {sequence}; the cache has sequences 0..{cache.Sequences - 1}.", "options.CacheSequences");
            for (int other = 0; other < b && !sequences.IsEmpty; other++)
                if (sequences[other] == sequence)
                    throw new ArgumentException($"options.CacheSequences names sequence {sequence} twice (rows {other} and {b}); each row must extend its own sequence.", "options.CacheSequences");
            cache.CheckRoom(sequence, length, nameof(cache));
        }
        int? threads = options.MaxDegreeOfParallelism;
        int hd = _heads * _d, width = _queryRows + 2 * _kvWidth;

        // Scratch, in floats: projections [B·L, width], attention output [B·L, H·D], and for a 16-bit cache the queries
        // and attention output of one sequence in its element type.
        long projected = (long)batch * length * width, attended = (long)batch * length * hd;
        long narrow = typeof(TCache) == typeof(float) ? 0 : ((long)length * hd * sizeof(TCache) + 3) / 4;
        float* queries = ModuleScratch.Rent(projected + attended + 2 * narrow);
        float* attention = queries + projected;
        TCache* narrowQueries = (TCache*)(attention + attended), narrowOutput = (TCache*)(attention + attended + narrow);

        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1);
        Project(input, inputWeights, _inputBias, queries, width, threads);

        long end = 0;
        for (int b = 0; b < batch; b++) end = Math.Max(end, (long)cache.Length(sequences.IsEmpty ? b : sequences[b]) + length);
        var table = RotaryReaching(end);
        for (int b = 0; b < batch; b++)
        {
            int sequence = sequences.IsEmpty ? b : sequences[b], cached = cache.Length(sequence);
            float* rows = queries + (long)b * length * width, keys = rows + _queryRows, values = keys + _kvWidth;
            if (table is not null)
            {
                table.Apply(rows, width, length, _heads, _d, cached, _config.Rotary!.Layout);
                table.Apply(keys, width, length, _kvHeads, _d, cached, _config.Rotary!.Layout);
            }
            cache.Append(sequence, keys, values, width, length);

            int total = cached + length;
            float* target = attention + (long)b * length * hd;
            var attentionOptions = new AttentionOptions { Scale = options.Scale, Mask = CausalToTheEnd, MaxDegreeOfParallelism = threads };
            if (typeof(TCache) == typeof(float))
            {
                var q = TensorLayout.View(rows, (nint)length * width, [1, _heads, length, _d], [(nint)length * width, _d, width, 1]);
                var o = TensorLayout.View(target, (nint)length * hd, [1, _heads, length, _d], [(nint)length * hd, _d, hd, 1]);
                CpuBackend.Default.Forward<float>(q, Reinterpret<TCache, float>(cache.KeysThrough(sequence, total)),
                    Reinterpret<TCache, float>(cache.ValuesThrough(sequence, total)), o, attentionOptions);
            }
            else
            {
                // A 16-bit cache: queries and output in its element type (attention takes one element type).
                for (int t = 0; t < length; t++)
                    ElementConversion.FromSingle(rows + (nint)t * width, hd, narrowQueries + (nint)t * hd, 1);
                var q = TensorLayout.View(narrowQueries, (nint)length * hd, [1, _heads, length, _d], [(nint)length * hd, _d, hd, 1]);
                var o = TensorLayout.View(narrowOutput, (nint)length * hd, [1, _heads, length, _d], [(nint)length * hd, _d, hd, 1]);
                CpuBackend.Default.Forward<TCache>(q, cache.KeysThrough(sequence, total), cache.ValuesThrough(sequence, total), o, attentionOptions);
                ElementConversion.ToSingle(narrowOutput, 1, length * hd, target);
            }
        }
        Finish(attention, queries, width, batch, length, output, threads);
    }

    private static ReadOnlyTensorSpan<TTo> Reinterpret<TFrom, TTo>(ReadOnlyTensorSpan<TFrom> span) =>
        System.Runtime.CompilerServices.Unsafe.As<ReadOnlyTensorSpan<TFrom>, ReadOnlyTensorSpan<TTo>>(ref span);
}
