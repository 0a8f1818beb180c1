using System.Numerics.Tensors;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// A KV cache in fixed-size pages shared by many sequences (vLLM's paged layout): a pool of pages, each holding
/// <see cref="PageSize"/> tokens of every KV head, and per sequence a block table of the pages it holds, in order. A
/// sequence takes a page when it needs one and gives its pages back on <see cref="Reset"/> or <see cref="Truncate"/>,
/// so sequences of very different lengths share one allocation without reserving their maximum length each.
/// </summary>
/// <remarks>
/// A decode step (up to 8 new tokens per sequence) reads each sequence through its block table, one job per sequence:
/// the kernel keeps the key blocks of a contiguous cache and reads each block run by run, a run being pages of
/// consecutive numbers (the pool stores each KV head's pages one after another, so a run is one strided block of keys).
/// Any table gives the contiguous cache's bits. A longer call (a prefill past 8 tokens) reads a sequence of one run
/// where it lies, and a sequence of several from a contiguous copy gathered first (the tile kernel has no page table):
/// the same keys in the same order, so again the contiguous cache's bits. Pages are
/// handed out lowest number first and come back in order, so a sequence that grows alone holds one run. A call that
/// needs more pages than the pool has free is refused before anything is written.
/// </remarks>
public sealed unsafe class PagedKeyValueCache<T> : IKeyValueStore<T>, IDisposable where T : unmanaged
{
    private readonly NativeTensor<T> _keys, _values; // [kvHeads, pages, pageSize, headDim]: a head's consecutive pages are contiguous
    private readonly List<int>[] _tables;
    private readonly List<int>[] _runs; // per sequence, the block-table indices where a run of consecutive pages starts
    private readonly Stack<int> _free;
    private readonly int[] _lengths;

    /// <summary>An empty cache of <paramref name="pages"/> pages for up to <paramref name="sequences"/> sequences.</summary>
    /// <exception cref="ArgumentException">a dimension below 1.</exception>
    /// <exception cref="NotSupportedException">an element type other than float, Half and BFloat16.</exception>
    public PagedKeyValueCache(int pages, int pageSize, int sequences, int kvHeads, int headDim)
    {
        ElementTypes.ThrowIfUnsupported<T>();
        foreach (var (value, name) in new[] { (pages, nameof(pages)), (pageSize, nameof(pageSize)), (sequences, nameof(sequences)), (kvHeads, nameof(kvHeads)), (headDim, nameof(headDim)) })
            if (value < 1) throw new ArgumentException($"{name} is {value}; expected at least 1.", name);
        (Pages, PageSize, Sequences, KvHeads, HeadDim) = (pages, pageSize, sequences, kvHeads, headDim);
        _keys = NativeTensor<T>.Zeros(kvHeads, pages, pageSize, headDim);
        _values = NativeTensor<T>.Zeros(kvHeads, pages, pageSize, headDim);
        _tables = Enumerable.Range(0, sequences).Select(_ => new List<int>()).ToArray();
        _runs = Enumerable.Range(0, sequences).Select(_ => new List<int>()).ToArray();
        _free = new Stack<int>(Enumerable.Range(0, pages).Reverse()); // page 0 first
        _lengths = new int[sequences];
    }

    /// <summary>Pages in the pool.</summary>
    public int Pages { get; }

    /// <summary>Tokens per page.</summary>
    public int PageSize { get; }

    /// <summary>Sequences the cache can hold.</summary>
    public int Sequences { get; }

    /// <summary>Key/value heads per token.</summary>
    public int KvHeads { get; }

    /// <summary>Dimension of each head.</summary>
    public int HeadDim { get; }

    /// <summary>Pages no sequence holds.</summary>
    public int FreePages => _free.Count;

    /// <summary>Tokens sequence <paramref name="sequence"/> holds.</summary>
    public int Length(int sequence) => _lengths[CheckSequence(sequence)];

    /// <summary>The pages a sequence holds, in token order (its block table).</summary>
    public IReadOnlyList<int> PageTable(int sequence) => _tables[CheckSequence(sequence)];

    /// <summary>Empties a sequence and returns its pages to the pool.</summary>
    public void Reset(int sequence) => Truncate(sequence, 0);

    /// <summary>Drops the tokens of a sequence past <paramref name="length"/>; pages no longer needed return to the pool.</summary>
    /// <exception cref="ArgumentOutOfRangeException">a length below 0 or above what the sequence holds.</exception>
    public void Truncate(int sequence, int length)
    {
        CheckSequence(sequence);
        if ((uint)length > (uint)_lengths[sequence])
            throw new ArgumentOutOfRangeException(nameof(length), $"length is {length}; sequence {sequence} holds {_lengths[sequence]} tokens, so it must be 0..{_lengths[sequence]}.");
        var table = _tables[sequence];
        int keep = (length + PageSize - 1) / PageSize;
        for (int p = table.Count - 1; p >= keep; p--)
        {
            _free.Push(table[p]);
            table.RemoveAt(p);
        }
        var runs = _runs[sequence];
        while (runs.Count > 0 && runs[^1] >= table.Count) runs.RemoveAt(runs.Count - 1);
        _lengths[sequence] = length;
    }

    /// <summary>One sequence's first <paramref name="length"/> keys, gathered into a dense [1, kvHeads, length, headDim] copy (for inspection).</summary>
    public T[] Keys(int sequence, int length) => Gather(_keys, CheckSequence(sequence), length);

    /// <summary>One sequence's first <paramref name="length"/> values, gathered like <see cref="Keys"/>.</summary>
    public T[] Values(int sequence, int length) => Gather(_values, CheckSequence(sequence), length);

    private T[] Gather(NativeTensor<T> memory, int sequence, int length)
    {
        if ((uint)length > (uint)_lengths[sequence])
            throw new ArgumentOutOfRangeException(nameof(length), $"length is {length}; sequence {sequence} holds {_lengths[sequence]} tokens.");
        var result = new T[(long)KvHeads * length * HeadDim];
        for (int h = 0; h < KvHeads; h++)
            for (int j = 0; j < length; j++)
                new ReadOnlySpan<T>(memory.Pointer + Offset(_tables[sequence][j / PageSize], h, j % PageSize), HeadDim)
                    .CopyTo(result.AsSpan(checked((int)(((long)h * length + j) * HeadDim))));
        return result;
    }

    private nint Offset(int page, int head, int slot) => (((nint)head * Pages + page) * PageSize + slot) * HeadDim;

    void IKeyValueStore<T>.CheckRoom(ReadOnlySpan<int> sequences, int tokens, string parameter)
    {
        long needed = 0;
        foreach (int sequence in sequences)
            needed += (_lengths[sequence] + (long)tokens + PageSize - 1) / PageSize - _tables[sequence].Count;
        if (needed > _free.Count)
            throw new ArgumentException(
                $"The paged KV cache has {_free.Count} free pages of {PageSize} tokens; appending {tokens} tokens to {sequences.Length} sequences needs {needed}. Nothing was written; Reset or Truncate sequences to free pages, or use a larger pool.", parameter);
    }

    void IKeyValueStore<T>.Append(int sequence, float* keys, float* values, nint rowStride, int tokens)
    {
        var table = _tables[sequence];
        int start = _lengths[sequence];
        for (int t = 0; t < tokens; t++)
        {
            int position = start + t;
            if (position / PageSize == table.Count) TakePage(sequence); // CheckRoom made sure there is one
            int page = table[position / PageSize], slot = position % PageSize;
            for (int h = 0; h < KvHeads; h++)
            {
                ElementConversion.FromSingle(keys + t * rowStride + (nint)h * HeadDim, HeadDim, _keys.Pointer + Offset(page, h, slot), 1);
                ElementConversion.FromSingle(values + t * rowStride + (nint)h * HeadDim, HeadDim, _values.Pointer + Offset(page, h, slot), 1);
            }
        }
        _lengths[sequence] = start + tokens;
    }

    /// <summary>Gives the sequence the next free page, noting where a new run starts.</summary>
    private void TakePage(int sequence)
    {
        var table = _tables[sequence];
        int page = _free.Pop();
        if (table.Count == 0 || page != table[^1] + 1) _runs[sequence].Add(table.Count);
        table.Add(page);
    }

    /// <summary>
    /// Runs of consecutive page numbers among the pages holding the first <paramref name="length"/> tokens; past the
    /// pages the sequence holds, each page it would still take counts as a run of its own (an upper bound).
    /// </summary>
    int IKeyValueStore<T>.SegmentCount(int sequence, int length)
    {
        var runs = _runs[sequence];
        int pages = (length + PageSize - 1) / PageSize, held = Math.Min(pages, _tables[sequence].Count);
        int startsBelow = runs.BinarySearch(held);
        return (startsBelow >= 0 ? startsBelow : ~startsBelow) + pages - held;
    }

    /// <summary>Run <paramref name="index"/> of the first <paramref name="length"/> tokens: its first token, token count and K/V views.</summary>
    (int FirstKey, int Count, RawStrided4<T> Keys, RawStrided4<T> Values) IKeyValueStore<T>.Segment(int sequence, int index, int length)
    {
        var table = _tables[sequence];
        var runs = _runs[sequence];
        int start = runs[index], end = index + 1 < runs.Count ? runs[index + 1] : table.Count;
        int first = start * PageSize, count = Math.Min((end - start) * PageSize, length - first);
        nint at = Offset(table[start], 0, 0), headStride = (nint)Pages * PageSize * HeadDim;
        return (first, count, new RawStrided4<T>(_keys.Pointer + at, 1, KvHeads, count, HeadDim, 0, headStride, HeadDim, 1),
                new RawStrided4<T>(_values.Pointer + at, 1, KvHeads, count, HeadDim, 0, headStride, HeadDim, 1));
    }

    (RawStrided4<T> Keys, RawStrided4<T> Values) IKeyValueStore<T>.Pages(int sequence, int length, int* table)
    {
        var pages = _tables[sequence];
        for (int n = 0; n < (length + PageSize - 1) / PageSize; n++) table[n] = pages[n];
        nint headStride = (nint)Pages * PageSize * HeadDim;
        return (new RawStrided4<T>(_keys.Pointer, 1, KvHeads, length, HeadDim, 0, headStride, HeadDim, 1),
                new RawStrided4<T>(_values.Pointer, 1, KvHeads, length, HeadDim, 0, headStride, HeadDim, 1));
    }

    private int CheckSequence(int sequence)
    {
        if ((uint)sequence >= (uint)Sequences)
            throw new ArgumentOutOfRangeException(nameof(sequence), $"sequence is {sequence}; the cache has sequences 0..{Sequences - 1}.");
        return sequence;
    }

    /// <summary>Frees the pool's native memory.</summary>
    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
