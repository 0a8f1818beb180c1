using System.Buffers;
using System.Numerics.Tensors;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Kernels.Masking;
using AttentionEngine.Kernels.Tensors;

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
        // and attention output of every row in its element type.
        long projected = (long)batch * length * width, attended = (long)batch * length * hd;
        long narrow = typeof(TCache) == typeof(float) ? 0 : ((long)batch * length * hd * sizeof(TCache) + 3) / 4;
        float* queries = ModuleScratch.Rent(projected + attended + 2 * narrow);
        float* attention = queries + projected;
        TCache* narrowQueries = (TCache*)(attention + attended), narrowOutput = (TCache*)(attention + attended + narrow);

        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1);
        Project(input, inputWeights, _inputBias, queries, width, threads);

        long end = 0;
        for (int b = 0; b < batch; b++) end = Math.Max(end, (long)cache.Length(sequences.IsEmpty ? b : sequences[b]) + length);
        var table = RotaryReaching(end);
        float scale = options.Scale ?? (float)(1.0 / Math.Sqrt(_d));
        var jobs = ArrayPool<CpuAttentionJob<TCache>>.Shared.Rent(batch);
        try
        {
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

                // Queries and output as [1, H, L, D] views: the projections themselves for a float cache; for a 16-bit
                // cache, copies in its element type (attention takes one element type).
                TCache* q, o;
                nint queryRow;
                if (typeof(TCache) == typeof(float))
                {
                    q = (TCache*)rows;
                    o = (TCache*)(attention + (long)b * length * hd);
                    queryRow = width;
                }
                else
                {
                    q = narrowQueries + (long)b * length * hd;
                    o = narrowOutput + (long)b * length * hd;
                    queryRow = hd;
                    for (int t = 0; t < length; t++) ElementConversion.FromSingle(rows + (nint)t * width, hd, q + (nint)t * hd, 1);
                }
                int total = cached + length;
                var (k, v) = cache.Slot(sequence, total);
                jobs[b] = new CpuAttentionJob<TCache>
                {
                    Batch = 1, QueryHeads = _heads, KvHeads = _kvHeads, QueryLength = length, KeyLength = total, HeadDim = _d, ValueDim = _d,
                    Scale = scale, Band = CausalToTheEnd.Resolve(length, total),
                    Q = new RawStrided4<TCache>(q, 1, _heads, length, _d, 0, _d, queryRow, 1),
                    K = k, V = v,
                    Output = new RawStrided4<TCache>(o, 1, _heads, length, _d, 0, _d, hd, 1),
                };
            }
            // Every row's attention in one set of tasks (a decode batch is many tiny problems: one pool wake-up, not one per row).
            CpuForward.RunMany(new ReadOnlySpan<CpuAttentionJob<TCache>>(jobs, 0, batch), FlexMods<KeepAll, IdentityScore>.None(default), CpuIsa.Auto,
                threads ?? Environment.ProcessorCount);
        }
        finally
        {
            ArrayPool<CpuAttentionJob<TCache>>.Shared.Return(jobs, clearArray: true);
        }
        if (typeof(TCache) != typeof(float))
            ElementConversion.ToSingle(narrowOutput, 1, batch * length * hd, attention);
        Finish(attention, queries, width, batch, length, output, threads);
    }
}
