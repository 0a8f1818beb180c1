namespace AttentionEngine;

/// <summary>
/// Document (varlen) masking of packed sequences: a query sees only keys of its own document, optionally causally.
/// Document ids are per token and must be non-decreasing (documents packed one after another), which lets whole
/// blocks be classified from their first and last ids.
/// </summary>
public readonly struct DocumentMask : IBlockClassifiedMask, IShapeCheckedFunctor
{
    private readonly int[] _queryDocuments;
    private readonly int[] _keyDocuments;

    /// <param name="queryDocuments">document id of every query position (non-decreasing)</param>
    /// <param name="keyDocuments">document id of every key position (non-decreasing)</param>
    /// <param name="causal">also hide keys after the query (positions counted from the start of the pack)</param>
    public DocumentMask(int[] queryDocuments, int[] keyDocuments, bool causal)
    {
        ArgumentNullException.ThrowIfNull(queryDocuments);
        ArgumentNullException.ThrowIfNull(keyDocuments);
        ThrowIfDecreasing(queryDocuments, nameof(queryDocuments));
        ThrowIfDecreasing(keyDocuments, nameof(keyDocuments));
        _queryDocuments = queryDocuments;
        _keyDocuments = keyDocuments;
        Causal = causal;
    }

    /// <summary>True when a query also sees only keys at or before its own position within its document.</summary>
    public bool Causal { get; }
    /// <summary>Number of query positions the mask covers (the length of its query document ids).</summary>
    public int QueryLength => _queryDocuments?.Length ?? 0;
    /// <summary>Number of key positions the mask covers (the length of its key document ids).</summary>
    public int KeyLength => _keyDocuments?.Length ?? 0;

    /// <inheritdoc/>
    public bool Keep(int batch, int head, int query, int key) =>
        _queryDocuments[query] == _keyDocuments[key] && (!Causal || key <= query);

    /// <inheritdoc/>
    public BlockKind Classify(int batch, int head, int q0, int q1, int k0, int k1)
    {
        int qFirst = _queryDocuments[q0], qLast = _queryDocuments[q1 - 1];
        int kFirst = _keyDocuments[k0], kLast = _keyDocuments[k1 - 1];
        if (qLast < kFirst || kLast < qFirst) return BlockKind.Empty;
        if (Causal && k0 > q1 - 1) return BlockKind.Empty;
        bool oneDocument = qFirst == qLast && kFirst == kLast && qFirst == kFirst;
        return oneDocument && (!Causal || k1 - 1 <= q0) ? BlockKind.Full : BlockKind.Partial;
    }

    /// <summary>One document id per query and per key position of the call; a default DocumentMask has none.</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        _queryDocuments is null ? "it holds no document ids (a default value); build it with new DocumentMask(queryDocuments, keyDocuments, causal)"
        : _queryDocuments.Length != queryLength ? $"it holds {_queryDocuments.Length} query document ids; the call has Lq = {queryLength} queries"
        : _keyDocuments.Length != keyLength ? $"it holds {_keyDocuments.Length} key document ids; the call has Lk = {keyLength} keys" : null;

    private static void ThrowIfDecreasing(int[] ids, string name)
    {
        for (int n = 1; n < ids.Length; n++)
            if (ids[n] < ids[n - 1])
                throw new ArgumentException($"{name}[{n}] is {ids[n]}, below {name}[{n - 1}] = {ids[n - 1]}; document ids must be non-decreasing (packed documents).", name);
    }
}
