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
        // kernel, up to its query count). A longer call reads a sequence's keys where they lie when they are one block
        // (a contiguous cache, or pages of consecutive numbers), else from a contiguous copy gathered first: a job per run
        // of pages and a merge of their partial results had cost up to 8x the contiguous cache's time on a fragmented
        // table. Run counts taken before the append are upper bounds; the exact count is taken after it.
        bool pageTables = cache.PageSize > 0 && length <= KeyValuePages.MaxQueries;
        int tablePages = 0, gatherLength = 0;
        for (int b = 0; b < batch; b++)
        {
            int total = cache.Length(sequences[b]) + length;
            if (pageTables) tablePages += (total + cache.PageSize - 1) / cache.PageSize;
            else if (cache.SegmentCount(sequences[b], total) > 1) gatherLength = Math.Max(gatherLength, total);
        }

        // Scratch, in floats: projections [B·L, width], attention output [B·L, H·D], the 16-bit queries and outputs of
        // every row (a 16-bit cache), and one sequence's gathered keys and values (the cache's type, [KV heads, keys, D]).
        long projected = (long)batch * length * width, attended = (long)batch * length * hd;
        long narrow = typeof(TCache) == typeof(float) ? 0 : ((long)batch * length * hd * sizeof(TCache) + 3) / 4;
        long gatherElements = (long)gatherLength * _kvHeads * _d, gathered = (2 * gatherElements * sizeof(TCache) + 3) / 4;
        float* queries = ModuleScratch.Rent(projected + attended + 2 * narrow + gathered);
        float* attention = queries + projected;
        TCache* narrowQueries = (TCache*)(attention + attended), narrowOutput = (TCache*)(attention + attended + narrow);
        TCache* gatheredKeys = (TCache*)(attention + attended + 2 * narrow), gatheredValues = gatheredKeys + gatherElements;

        var inputWeights = MatrixView<TWeight>.Over(ref *_inputWeights.Pointer, _inputWeights.Lengths[0], _e, _e, 1);
        Project(input, inputWeights, _inputBias, queries, width, threads);

        long end = 0;
        for (int b = 0; b < batch; b++) end = Math.Max(end, (long)cache.Length(sequences[b]) + length);
        var table = RotaryReaching(end);
        float scale = options.Scale ?? (float)(1.0 / Math.Sqrt(_d));
        var jobs = ArrayPool<CpuAttentionJob<TCache>>.Shared.Rent(batch);
        var gathers = ArrayPool<(int Sequence, CpuAttentionJob<TCache> Job)>.Shared.Rent(batch); // K and V set once gathered
        var tables = ArrayPool<int>.Shared.Rent(Math.Max(tablePages, 1));
        try
        {
            fixed (int* tableStart = tables)
            {
                int job = 0, deferred = 0;
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
                    int total = cached + length;
                    var attend = new CpuAttentionJob<TCache>
                    {
                        Batch = 1, QueryHeads = _heads, KvHeads = _kvHeads, QueryLength = length, KeyLength = total, HeadDim = _d, ValueDim = _d,
                        Scale = scale, Band = CausalToTheEnd.Resolve(length, total), Q = new RawStrided4<TCache>(q, 1, _heads, length, _d, 0, _d, queryRow, 1),
                        K = default, V = default, Output = new RawStrided4<TCache>(o, 1, _heads, length, _d, 0, _d, hd, 1),
                    };
                    if (pageTables)
                    {
                        var (k, v) = cache.Pages(sequence, total, pageTable);
                        int pages = (total + cache.PageSize - 1) / cache.PageSize;
                        jobs[job++] = attend with { K = k, V = v, Pages = new KeyValuePages(pageTable, pages, cache.PageSize) };
                        pageTable += pages;
                    }
                    else if (cache.SegmentCount(sequence, total) == 1)
                    {
                        var (_, _, k, v) = cache.Segment(sequence, 0, total);
                        jobs[job++] = attend with { K = k, V = v };
                    }
                    else gathers[deferred++] = (sequence, attend);
                }
                // Every row's attention in one set of tasks (a decode batch is many tiny problems), then each row whose
                // keys were gathered, one after another through the one copy (such a call has rows of 9 queries or more).
                var mods = FlexMods<KeepAll, IdentityScore>.None(default);
                if (job > 0) CpuForward.RunMany(new ReadOnlySpan<CpuAttentionJob<TCache>>(jobs, 0, job), mods, CpuIsa.Auto, threads ?? Environment.ProcessorCount);
                for (int n = 0; n < deferred; n++)
                {
                    var (sequence, attend) = gathers[n];
                    Gather(cache, sequence, attend.KeyLength, gatheredKeys, gatheredValues);
                    nint headStride = (nint)attend.KeyLength * _d;
                    var gatheredJob = attend with
                    {
                        K = new RawStrided4<TCache>(gatheredKeys, 1, _kvHeads, attend.KeyLength, _d, 0, headStride, _d, 1),
                        V = new RawStrided4<TCache>(gatheredValues, 1, _kvHeads, attend.KeyLength, _d, 0, headStride, _d, 1),
                    };
                    CpuForward.RunMany(new ReadOnlySpan<CpuAttentionJob<TCache>>(ref gatheredJob), mods, CpuIsa.Auto, threads ?? Environment.ProcessorCount);
                }
            }
        }
        finally
        {
            ArrayPool<CpuAttentionJob<TCache>>.Shared.Return(jobs, clearArray: true);
            ArrayPool<(int, CpuAttentionJob<TCache>)>.Shared.Return(gathers, clearArray: true);
            ArrayPool<int>.Shared.Return(tables);
        }
        if (typeof(TCache) != typeof(float))
            ElementConversion.ToSingle(narrowOutput, 1, batch * length * hd, attention);
        Finish(attention, queries, width, batch, length, output, threads);
    }

    /// <summary>A sequence's first <paramref name="length"/> keys and values, segment by segment, into contiguous [KV heads, length, D] copies.</summary>
    private void Gather<TCache>(IKeyValueStore<TCache> cache, int sequence, int length, TCache* keys, TCache* values) where TCache : unmanaged
    {
        int count = cache.SegmentCount(sequence, length);
        for (int s = 0; s < count; s++)
        {
            var (first, rows, k, v) = cache.Segment(sequence, s, length);
            // A segment's rows of one head lie one after another (a slot, or a run of pages): one copy each.
            int run = k.Stride2 == _d && v.Stride2 == _d ? rows : 1;
            for (int h = 0; h < _kvHeads; h++)
                for (int j = 0; j < rows; j += run)
                {
                    long at = ((long)h * length + first + j) * _d;
                    new ReadOnlySpan<TCache>(&k.Base[k.Offset(0, h, j, 0)], run * _d).CopyTo(new Span<TCache>(keys + at, run * _d));
                    new ReadOnlySpan<TCache>(&v.Base[v.Offset(0, h, j, 0)], run * _d).CopyTo(new Span<TCache>(values + at, run * _d));
                }
        }
    }
}
