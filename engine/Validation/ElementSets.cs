namespace AttentionEngine;

/// <summary>
/// The bytes a strided tensor's elements occupy, relative to its first element, for the exact overlap test: two
/// tensors overlap only when some element of one shares a byte with some element of the other. Interleaved layouts
/// whose extents cross but whose elements never meet (FlashAttention's packed [B, S, 3, H, D] q/k/v, or dQ/dK/dV,
/// as three views of one buffer) are disjoint. Up to four dimensions; strides in elements, non-negative.
/// </summary>
internal struct ElementSet
{
    private Long4 _lengths;
    private Long4 _strides; // bytes, outermost (largest) first; dimensions of length 1 or stride 0 left out
    private int _rank;
    private int _elementSize;
    private bool _exact;

    public static ElementSet Of(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, int elementSize)
    {
        var set = new ElementSet { _elementSize = elementSize, _exact = lengths.Length <= 4 };
        if (!set._exact) return set;
        Span<(long Stride, long Length)> dims = stackalloc (long, long)[4];
        int rank = 0;
        for (int d = 0; d < lengths.Length; d++)
        {
            if (strides[d] < 0) { set._exact = false; return set; }
            if (lengths[d] > 1 && strides[d] > 0) dims[rank++] = (strides[d] * (long)elementSize, lengths[d]);
        }
        dims[..rank].Sort((a, b) => b.Stride.CompareTo(a.Stride));
        for (int d = 0; d < rank; d++)
        {
            set._strides[d] = dims[d].Stride;
            set._lengths[d] = dims[d].Length;
        }
        set._rank = rank;
        return set;
    }

    /// <summary>Bytes from the first element's start to the last element's end, counting dimensions from <paramref name="from"/> inward.</summary>
    private readonly long Span(int from)
    {
        long span = _elementSize;
        for (int d = from; d < _rank; d++) span += _strides[d] * (_lengths[d] - 1);
        return span;
    }

    /// <summary>Bytes from the first element's start to the last element's end.</summary>
    public readonly long Extent => Span(0);

    /// <summary>
    /// Whether an element of <paramref name="other"/>, whose first element lies <paramref name="offset"/> bytes after
    /// ours, shares a byte with one of ours. Exact for layouts of up to four non-negative strides within
    /// <paramref name="budget"/> steps (ample for real layouts: each level only descends into sub-blocks whose extents
    /// meet); beyond it, or for other layouts, it answers as the extents do.
    /// </summary>
    public readonly bool Intersects(in ElementSet other, long offset, int budget = 1 << 22)
    {
        if (offset >= Extent || -offset >= other.Extent) return false;
        if (!_exact || !other._exact) return true;
        var self = this;
        return Search(self, 0, 0, other, 0, offset, ref budget) != false;
    }

    /// <summary>Depth-first over sub-blocks whose extents meet; null when the budget ran out (treated as overlapping).</summary>
    private static bool? Search(in ElementSet a, int ia, long baseA, in ElementSet b, int ib, long baseB, ref int budget)
    {
        long spanA = a.Span(ia), spanB = b.Span(ib);
        if (baseA >= baseB + spanB || baseB >= baseA + spanA) return false;
        if (ia == a._rank && ib == b._rank) return true;
        if (--budget < 0) return null;
        // Split the block with the larger extent (the other if this one is a single element) along its outer dimension.
        bool splitA = ib == b._rank || (ia < a._rank && spanA >= spanB);
        var (set, d, start, lo, hi) = splitA ? (a, ia, baseA, baseB, baseB + spanB) : (b, ib, baseB, baseA, baseA + spanA);
        long stride = set._strides[d], inner = set.Span(d + 1);
        // Sub-block k covers [start + k·stride, start + k·stride + inner): only those meeting [lo, hi) are searched.
        long first = Math.Max(0, FloorDiv(lo - start - inner, stride) + 1);
        long last = Math.Min(set._lengths[d] - 1, FloorDiv(hi - 1 - start, stride));
        for (long k = first; k <= last; k++)
        {
            long position = start + k * stride;
            var found = splitA ? Search(a, ia + 1, position, b, ib, baseB, ref budget) : Search(a, ia, baseA, b, ib + 1, position, ref budget);
            if (found != false) return found;
        }
        return false;
    }

    private static long FloorDiv(long a, long b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    [System.Runtime.CompilerServices.InlineArray(4)]
    private struct Long4
    {
        private long _element;
    }
}
