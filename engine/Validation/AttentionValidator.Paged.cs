namespace AttentionEngine;

/// <summary>A checked paged decode call: its shape (KeyLength = the longest sequence), the band relative to each sequence's end.</summary>
internal readonly record struct PagedDecodeCall(AttentionShape Shape, float Scale, DiagonalBand BandFromEnd, int PagesPerSequence,
    int PageSize, int[] BlockTable, int[] KeyLengths);

internal static partial class AttentionValidator
{
    /// <summary>The most queries per sequence the paged decode takes (its kernel's rows).</summary>
    internal const int MaxPagedQueries = 8;

    /// <summary>Checks a paged decode call (see <see cref="CudaBackend.ForwardPaged{T}"/>) before anything runs.</summary>
    internal static PagedDecodeCall ValidatePaged<T>(
        DeviceTensor<T> q, DeviceTensor<T> keyPages, DeviceTensor<T> valuePages, ReadOnlySpan<int> blockTable, ReadOnlySpan<int> keyLengths,
        DeviceTensor<T> output, scoped in AttentionOptions options, DeviceTensor<float>? lse) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        int ordinal = RequireOneDevice(q, keyPages, nameof(keyPages), valuePages, nameof(valuePages), output);
        RequireRank(q, nameof(q), "[batch, heads, queries, D]");
        RequireRank(keyPages, nameof(keyPages), "[pages, page size, KV heads, D]");
        RequireRank(valuePages, nameof(valuePages), "[pages, page size, KV heads, Dv]");
        RequireRank(output, nameof(output), "[batch, heads, queries, Dv]");

        ReadOnlySpan<nint> ql = q.Lengths, kl = keyPages.Lengths, vl = valuePages.Lengths, ol = output.Lengths;
        int batch = (int)ql[0], heads = (int)ql[1], queries = (int)ql[2], d = (int)ql[3];
        int pages = (int)kl[0], pageSize = (int)kl[1], kvHeads = (int)kl[2], dv = (int)vl[3];
        if (batch < 1 || heads < 1 || queries < 1 || d < 1)
            throw new ArgumentException($"q has shape [{string.Join(", ", ql.ToArray())}]; every dimension must be at least 1.", nameof(q));
        if (queries > MaxPagedQueries)
            throw new NotSupportedException($"q has {queries} queries per sequence; the paged decode takes up to {MaxPagedQueries} (prefill the cache with Forward).");
        if (pages < 1 || pageSize < 1 || kvHeads < 1 || kl[3] != d)
            throw new ArgumentException($"keyPages has shape [{string.Join(", ", kl.ToArray())}]; expected [pages ≥ 1, page size ≥ 1, KV heads ≥ 1, D = {d} (q's)].", nameof(keyPages));
        if (vl[0] != pages || vl[1] != pageSize || vl[2] != kvHeads || dv < 1)
            throw new ArgumentException($"valuePages has shape [{string.Join(", ", vl.ToArray())}]; expected [{pages}, {pageSize}, {kvHeads}, Dv ≥ 1] to match keyPages.", nameof(valuePages));
        if (heads % kvHeads != 0)
            throw new ArgumentException($"q has {heads} heads and the pages {kvHeads} KV heads; the heads must be a multiple of the KV heads.", nameof(q));
        if (Math.Max(d, dv) > 256)
            throw new NotSupportedException($"The paged decode takes head dimensions up to 256 (D = {d}, Dv = {dv}).");
        if (ol[0] != batch || ol[1] != heads || ol[2] != queries || ol[3] != dv)
            throw new ArgumentException($"output has shape [{string.Join(", ", ol.ToArray())}]; expected [{batch}, {heads}, {queries}, {dv}].", nameof(output));
        if (keyPages.Strides[3] != 1 || valuePages.Strides[3] != 1)
            throw new ArgumentException($"keyPages and valuePages must be contiguous along D (their strides are [{string.Join(", ", keyPages.Strides.ToArray())}] and [{string.Join(", ", valuePages.Strides.ToArray())}]).",
                keyPages.Strides[3] != 1 ? nameof(keyPages) : nameof(valuePages));
        CheckNonOverlapping(output.Lengths, output.Strides, nameof(output));

        if (keyLengths.Length != batch)
            throw new ArgumentException($"keyLengths has {keyLengths.Length} entries; expected one per sequence ({batch}).", nameof(keyLengths));
        if (blockTable.Length == 0 || blockTable.Length % batch != 0)
            throw new ArgumentException($"blockTable has {blockTable.Length} entries; expected batch ({batch}) x pages per sequence, row by row.", nameof(blockTable));
        int perSequence = blockTable.Length / batch;
        long capacity = (long)perSequence * pageSize;
        int longest = 0;
        for (int b = 0; b < batch; b++)
        {
            int length = keyLengths[b];
            if (length < 0 || length > capacity)
                throw new ArgumentOutOfRangeException(nameof(keyLengths), length, $"keyLengths[{b}] is {length}; expected 0 … {capacity} ({perSequence} pages of {pageSize}).");
            longest = Math.Max(longest, length);
            for (int n = 0; n < (length + pageSize - 1) / pageSize; n++)
            {
                int page = blockTable[b * perSequence + n];
                if (page < 0 || page >= pages)
                    throw new ArgumentOutOfRangeException(nameof(blockTable), page,
                        $"blockTable[{b}, {n}] is {page}, a page sequence {b} uses (it has {length} keys); expected 0 … {pages - 1}.");
            }
        }

        var shape = new AttentionShape(batch, heads, kvHeads, queries, longest, d, dv);
        float scale = ResolveScale(options, shape);
        CheckCudaOptions(options);
        if (!options.Bias.IsEmpty) throw new NotSupportedException("options.Bias: the paged decode takes no bias; use Forward on contiguous keys.");
        if (!options.KeepMask.IsEmpty) throw new NotSupportedException("options.KeepMask: the paged decode takes no keep-mask (each sequence's key length hides the rest).");
        if (options.ReturnLse) throw new NotSupportedException("options.Lse: the paged decode writes the LSE to a device tensor; pass it as lse.");
        if (options.Dropout.Probability != 0) throw new NotSupportedException("options.Dropout: the paged decode is for inference and takes no dropout.");
        var mask = options.Mask ?? Mask.None;
        if (!mask.IsEndAligned)
            throw new ArgumentException($"options.Mask is {mask}: a KV cache's queries are its last positions, so the paged decode aligns every mask to the end of each sequence's keys; use CausalAlignment.BottomRight.", "options.Mask");

        if (lse is not null)
        {
            ThrowIfUnusable(lse, nameof(lse), ordinal);
            CheckLseLengths(lse.Lengths, shape, nameof(lse));
            CheckNonOverlapping(lse.Lengths, lse.Strides, nameof(lse));
            ThrowIfOverlaps(Extent(lse), nameof(lse), Extent(output), "output");
        }
        foreach (var (extent, name) in new[] { (Extent(q), "q"), (Extent(keyPages), "keyPages"), (Extent(valuePages), "valuePages") })
        {
            ThrowIfOverlaps(Extent(output), "output", extent, name);
            if (lse is not null) ThrowIfOverlaps(Extent(lse), nameof(lse), extent, name);
        }
        // Relative to each sequence's end: resolved as if the keys were exactly the queries.
        return new PagedDecodeCall(shape, scale, mask.Resolve(queries, queries), perSequence, pageSize, blockTable.ToArray(), keyLengths.ToArray());
    }

    private static void RequireRank<TElement>(DeviceTensor<TElement> tensor, string name, string layout) where TElement : unmanaged
    {
        if (tensor.Rank != 4) throw new ArgumentException($"{name} has rank {tensor.Rank}; expected {layout}.", name);
    }
}
