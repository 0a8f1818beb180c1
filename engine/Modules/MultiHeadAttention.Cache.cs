using System.Buffers;
using System.Numerics.Tensors;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Kernels.Cpu.Decode;
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
        Decode<T, TCache>(input, output, cache, options);
    }

    /// <summary>
    /// <see cref="Forward{T, TCache}(ReadOnlyTensorSpan{T}, TensorSpan{T}, KeyValueCache{TCache}, in MultiHeadAttentionOptions)"/>
    /// over a paged cache: new tokens take pages from the shared pool as they need them, and attention runs page by
    /// page with an exact merge.
    /// </summary>
    /// <exception cref="ArgumentException">a shape that does not fit, a pool without the pages the call needs (nothing is written), or an option the cache path does not take.</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    public void Forward<T, TCache>(ReadOnlyTensorSpan<T> input, TensorSpan<T> output, PagedKeyValueCache<TCache> cache, scoped in MultiHeadAttentionOptions options = default)
        where T : unmanaged where TCache : unmanaged
    {
        ArgumentNullException.ThrowIfNull(cache);
        Decode<T, TCache>(input, output, cache, options);
    }

    private void Decode<T, TCache>(scoped in ReadOnlyTensorSpan<T> input, scoped in TensorSpan<T> output, IKeyValueStore<TCache> cache, scoped in MultiHeadAttentionOptions options)
        where T : unmanaged where TCache : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        RequireLoaded();
        if (!_fused)
            throw new ArgumentException($"This layer's KeyDim ({_config.KeyInputDim}) or ValueDim ({_config.ValueInputDim}) differs from EmbedDim ({_e}); the cache serves self-attention, which needs all three equal.", nameof(cache));
        if (cache.KvHeads != _kvHeads || cache.HeadDim != _d)
            throw new ArgumentException($"cache has {cache.KvHeads} KV heads of dimension {cache.HeadDim}; this layer needs {_kvHeads} of {_d}.", nameof(cache));
        if (options.Mask is not null || options.KeyPadding.Rank != 0 || options.Weights.Rank != 0 || options.AverageWeights.Rank != 0
            || options.PositionOffset != 0 || options.KeyPositionOffset != 0 || options.Dropout.IsActive)
            throw new ArgumentException(
                "With a KV cache the attention is causal to the end of each sequence and positions continue from the cache: leave Mask, KeyPadding, Weights, AverageWeights, PositionOffset and KeyPositionOffset unset, and Dropout (a cache serves inference).", nameof(options));
        var shape = ModuleCall.Validate(input, input, input, output, default, _config, self: true);
        int batch = shape.Batch, length = shape.QueryLength;
        if (options.MaxDegreeOfParallelism is < 1)
            throw new ArgumentException($"options.MaxDegreeOfParallelism is {options.MaxDegreeOfParallelism}; expected at least 1 (or null).", "options.MaxDegreeOfParallelism");
        var requested = options.CacheSequences;
        if (requested.IsEmpty && batch > cache.Sequences)
            throw new ArgumentException($"input has batch {batch}; the cache holds {cache.Sequences} sequences (set options.CacheSequences to map rows to sequences).", nameof(input));
        if (!requested.IsEmpty && requested.Length != batch)
            throw new ArgumentException($"options.CacheSequences has {requested.Length} entries; expected one per batch row ({batch}).", "options.CacheSequences");
        Span<int> sequences = batch <= 256 ? stackalloc int[batch] : new int[batch];
        for (int b = 0; b < batch; b++)
        {
            int sequence = requested.IsEmpty ? b : requested[b];
            if ((uint)sequence >= (uint)cache.Sequences)
                throw new ArgumentException($"options.CacheSequences[{b}] is {sequence}; the cache has sequences 0..{cache.Sequences - 1}.", "options.CacheSequences");
            for (int other = 0; other < b; other++)
                if (sequences[other] == sequence)
                    throw new ArgumentException($"options.CacheSequences names sequence {sequence} twice (rows {other} and {b}); each row must extend its own sequence.", "options.CacheSequences");
            sequences[b] = sequence;
        }
        cache.CheckRoom(sequences, length, nameof(cache));
        int? threads = options.MaxDegreeOfParallelism;
        int hd = _heads * _d, width = _queryRows + 2 * _kvWidth;

        // A paged cache's decode step reads each sequence through its block table, one job per sequence (the decode
        // kernel, up to its query count). Otherwise, key segments (one per contiguous slot, one per run of consecutive
        // pages): a row with several gets per-segment partial outputs and LSEs, merged afterwards; a row with one writes
        // its output directly. Counted before the append, for the scratch: an upper bound (the exact count, taken after
        // each row's append, may be lower).
        bool pageTables = cache.PageSize > 0 && length <= KeyValuePages.MaxQueries;
        int segments = 0, tablePages = 0;
        bool partials = false;
        for (int b = 0; b < batch; b++)
        {
            int total = cache.Length(sequences[b]) + length, count = pageTables ? 1 : cache.SegmentCount(sequences[b], total);
            segments += count;
            partials |= count > 1;
            if (pageTables) tablePages += (total + cache.PageSize - 1) / cache.PageSize;
        }

        // Scratch, in floats: projections [B·L, width], attention output [B·L, H·D], the 16-bit queries and outputs of
        // every row (a 16-bit cache), and per segment a partial output (the cache's type) and LSE [H, L].
        long projected = (long)batch * length * width, attended = (long)batch * length * hd;
        long narrow = typeof(TCache) == typeof(float) ? 0 : ((long)batch * length * hd * sizeof(TCache) + 3) / 4;
        long partialOutputs = partials ? ((long)segments * length * hd * sizeof(TCache) + 3) / 4 : 0, partialLses = partials ? (long)segments * length * _heads : 0;
        float* queries = ModuleScratch.Rent(projected + attended + 2 * narrow + partialOutputs + partialLses);
        float* attention = queries + projected;
        TCache* narrowQueries = (TCache*)(attention + attended), narrowOutput = (TCache*)(attention + attended + narrow);
        TCache* partOutputs = (TCache*)(attention + attended + 2 * narrow);
        float* partLses = attention + attended + 2 * narrow + partialOutputs;

        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1);
        Project(input, inputWeights, _inputBias, queries, width, threads);

        long end = 0;
        for (int b = 0; b < batch; b++) end = Math.Max(end, (long)cache.Length(sequences[b]) + length);
        var table = RotaryReaching(end);
        float scale = options.Scale ?? (float)(1.0 / Math.Sqrt(_d));
        var jobs = ArrayPool<CpuAttentionJob<TCache>>.Shared.Rent(segments);
        var tables = ArrayPool<int>.Shared.Rent(Math.Max(tablePages, 1));
        try
        {
            fixed (int* tableStart = tables)
            {
                int job = 0;
                int* pageTable = tableStart;
                for (int b = 0; b < batch; b++)
                {
                    int sequence = sequences[b], cached = cache.Length(sequence);
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
                    int total = cached + length, count = pageTables ? 0 : cache.SegmentCount(sequence, total);
                    var band = CausalToTheEnd.Resolve(length, total);
                    if (pageTables)
                    {
                        var (k, v) = cache.Pages(sequence, total, pageTable);
                        int pages = (total + cache.PageSize - 1) / cache.PageSize;
                        jobs[job++] = new CpuAttentionJob<TCache>
                        {
                            Batch = 1, QueryHeads = _heads, KvHeads = _kvHeads, QueryLength = length, KeyLength = total, HeadDim = _d, ValueDim = _d,
                            Scale = scale, Band = band, Q = new RawStrided4<TCache>(q, 1, _heads, length, _d, 0, _d, queryRow, 1), K = k, V = v,
                            Output = new RawStrided4<TCache>(o, 1, _heads, length, _d, 0, _d, hd, 1), Pages = new KeyValuePages(pageTable, pages, cache.PageSize),
                        };
                        pageTable += pages;
                    }
                    for (int s = 0; s < count; s++, job++)
                    {
                        var (firstKey, keyCount, k, v) = cache.Segment(sequence, s, total);
                        // A segment's keys start at firstKey: the band, on key − query, shifts with them.
                        var segmentBand = new DiagonalBand(band.Lo - firstKey, band.Hi - firstKey);
                        jobs[job] = new CpuAttentionJob<TCache>
                        {
                            Batch = 1, QueryHeads = _heads, KvHeads = _kvHeads, QueryLength = length, KeyLength = keyCount, HeadDim = _d, ValueDim = _d,
                            Scale = scale, Band = segmentBand, Q = new RawStrided4<TCache>(q, 1, _heads, length, _d, 0, _d, queryRow, 1), K = k, V = v,
                            Output = count == 1 ? new RawStrided4<TCache>(o, 1, _heads, length, _d, 0, _d, hd, 1)
                                : new RawStrided4<TCache>(partOutputs + (long)job * length * hd, 1, _heads, length, _d, 0, _d, hd, 1),
                            Lse = count == 1 ? default : new RawStrided4<float>(partLses + (long)job * length * _heads, 1, _heads, length, 1, 0, length, 1, 0),
                        };
                    }
                }
                // Every row's attention (every page of it) in one set of tasks: a decode batch is many tiny problems.
                CpuForward.RunMany(new ReadOnlySpan<CpuAttentionJob<TCache>>(jobs, 0, job), FlexMods<KeepAll, IdentityScore>.None(default), CpuIsa.Auto,
                    threads ?? Environment.ProcessorCount);
            }
        }
        finally
        {
            ArrayPool<CpuAttentionJob<TCache>>.Shared.Return(jobs, clearArray: true);
            ArrayPool<int>.Shared.Return(tables);
        }
        if (partials) MergeSegments(cache, sequences, length, partOutputs, partLses, narrowOutput, attention);
        if (typeof(TCache) != typeof(float))
            ElementConversion.ToSingle(narrowOutput, 1, batch * length * hd, attention);
        Finish(attention, queries, width, batch, length, output, threads);
    }

    /// <summary>Rows whose keys span several segments: their outputs, merged from the segments' partial outputs and LSEs.</summary>
    private void MergeSegments<TCache>(IKeyValueStore<TCache> cache, ReadOnlySpan<int> sequences, int length, TCache* partOutputs, float* partLses,
        TCache* narrowOutput, float* attention) where TCache : unmanaged
    {
        int hd = _heads * _d, job = 0;
        Span<double> accumulator = _d <= 512 ? stackalloc double[_d] : new double[_d];
        for (int b = 0; b < sequences.Length; b++)
        {
            int count = cache.SegmentCount(sequences[b], cache.Length(sequences[b]));
            if (count > 1)
                for (int t = 0; t < length; t++)
                    for (int h = 0; h < _heads; h++)
                    {
                        var row = new MergeRow(accumulator);
                        for (int s = 0; s < count; s++)
                            row.Add(partLses[(long)(job + s) * length * _heads + (long)h * length + t], in partOutputs[(long)(job + s) * length * hd + (long)t * hd + (long)h * _d], 1);
                        long at = (long)b * length * hd + (long)t * hd + (long)h * _d;
                        if (typeof(TCache) == typeof(float)) row.Finish(ref attention[at], 1);
                        else row.Finish(ref narrowOutput[at], 1);
                    }
            job += count;
        }
    }
}
