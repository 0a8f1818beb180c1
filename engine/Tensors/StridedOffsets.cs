namespace AttentionEngine;

/// <summary>
/// Walks the logical elements of a strided tensor in row-major logical order, yielding each element's memory
/// offset. An odometer over the dimensions: no recursion, no allocation per element.
/// </summary>
internal ref struct StridedOffsets
{
    private readonly ReadOnlySpan<nint> _lengths;
    private readonly ReadOnlySpan<nint> _strides;
    private readonly Span<nint> _index;
    private nint _offset;
    private bool _started;
    private readonly bool _empty;

    /// <param name="lengths">logical lengths</param>
    /// <param name="strides">element strides, one per length</param>
    /// <param name="indexScratch">scratch of the same rank (stackalloc it)</param>
    public StridedOffsets(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, Span<nint> indexScratch)
    {
        _lengths = lengths;
        _strides = strides;
        _index = indexScratch[..lengths.Length];
        _index.Clear();
        _offset = 0;
        _started = false;
        _empty = false;
        foreach (var length in lengths) _empty |= length == 0;
    }

    /// <summary>Offset of the current element.</summary>
    public readonly nint Current => _offset;

    public bool MoveNext()
    {
        if (_empty) return false;
        if (!_started) { _started = true; return true; }
        for (int d = _lengths.Length - 1; d >= 0; d--)
        {
            if (++_index[d] < _lengths[d]) { _offset += _strides[d]; return true; }
            _offset -= _strides[d] * (_lengths[d] - 1);
            _index[d] = 0;
        }
        return false;
    }
}
