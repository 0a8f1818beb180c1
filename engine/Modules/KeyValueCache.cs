using System.Numerics.Tensors;
using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// Keys and values of earlier tokens for incremental decoding, one fixed-capacity slot per sequence, stored as
/// <typeparamref name="T"/> (float, or BFloat16/Half to halve the memory and the bandwidth a decode step reads).
/// A <see cref="MultiHeadAttention{TWeight}"/> forward with a cache appends the new tokens' keys and values and
/// attends over everything the sequence holds; sequences advance independently (each has its own length).
/// </summary>
/// <remarks>
/// Memory is [sequences, kvHeads, capacity, headDim] for keys and for values, allocated once. A call that would
/// overflow a sequence's capacity is refused before anything is written, so nothing already cached is lost.
/// </remarks>
public sealed unsafe class KeyValueCache<T> : IKeyValueStore<T>, IDisposable where T : unmanaged
{
    private readonly NativeTensor<T> _keys, _values;
    private readonly int[] _lengths;

    /// <summary>An empty cache.</summary>
    /// <exception cref="ArgumentException">a dimension below 1, or more elements than one allocation can hold.</exception>
    /// <exception cref="NotSupportedException">an element type other than float, Half and BFloat16.</exception>
    public KeyValueCache(int sequences, int kvHeads, int headDim, int capacity)
    {
        ElementTypes.ThrowIfUnsupported<T>();
        foreach (var (value, name) in new[] { (sequences, nameof(sequences)), (kvHeads, nameof(kvHeads)), (headDim, nameof(headDim)), (capacity, nameof(capacity)) })
            if (value < 1) throw new ArgumentException($"{name} is {value}; expected at least 1.", name);
        (Sequences, KvHeads, HeadDim, Capacity) = (sequences, kvHeads, headDim, capacity);
        _keys = NativeTensor<T>.Zeros(sequences, kvHeads, capacity, headDim);
        _values = NativeTensor<T>.Zeros(sequences, kvHeads, capacity, headDim);
        _lengths = new int[sequences];
    }

    /// <summary>Sequences the cache holds (slots).</summary>
    public int Sequences { get; }

    /// <summary>Key/value heads per token.</summary>
    public int KvHeads { get; }

    /// <summary>Dimension of each head.</summary>
    public int HeadDim { get; }

    /// <summary>Most tokens one sequence can hold.</summary>
    public int Capacity { get; }

    /// <summary>Tokens sequence <paramref name="sequence"/> holds (its next token's position).</summary>
    public int Length(int sequence) => _lengths[CheckSequence(sequence)];

    /// <summary>Empties one sequence (its slot is reused from position 0).</summary>
    public void Reset(int sequence) => _lengths[CheckSequence(sequence)] = 0;

    /// <summary>
    /// Drops the tokens of one sequence past <paramref name="length"/> (rejected speculative tokens, an edited turn);
    /// what stays is untouched, and the next token takes position <paramref name="length"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">a length below 0 or above what the sequence holds.</exception>
    public void Truncate(int sequence, int length)
    {
        CheckSequence(sequence);
        if ((uint)length > (uint)_lengths[sequence])
            throw new ArgumentOutOfRangeException(nameof(length), $"length is {length}; sequence {sequence} holds {_lengths[sequence]} tokens, so it must be 0..{_lengths[sequence]}.");
        _lengths[sequence] = length;
    }

    /// <summary>Empties every sequence.</summary>
    public void Clear() => Array.Clear(_lengths);

    /// <summary>The cached keys of one sequence, [1, kvHeads, Length, headDim] (a view, valid until the cache changes).</summary>
    public ReadOnlyTensorSpan<T> Keys(int sequence) => View(_keys, CheckSequence(sequence), _lengths[sequence]);

    /// <summary>The cached values of one sequence, [1, kvHeads, Length, headDim].</summary>
    public ReadOnlyTensorSpan<T> Values(int sequence) => View(_values, CheckSequence(sequence), _lengths[sequence]);

    int IKeyValueStore<T>.SegmentCount(int sequence, int length) => 1;

    int IKeyValueStore<T>.PageSize => 0;

    (RawStrided4<T> Keys, RawStrided4<T> Values) IKeyValueStore<T>.Pages(int sequence, int length, int* table) =>
        throw new NotSupportedException("A contiguous KV cache has no pages.");

    (int FirstKey, int Count, RawStrided4<T> Keys, RawStrided4<T> Values) IKeyValueStore<T>.Segment(int sequence, int index, int length)
    {
        nint at = (nint)sequence * KvHeads * Capacity * HeadDim, headStride = (nint)Capacity * HeadDim;
        return (0, length, new RawStrided4<T>(_keys.Pointer + at, 1, KvHeads, length, HeadDim, 0, headStride, HeadDim, 1),
                new RawStrided4<T>(_values.Pointer + at, 1, KvHeads, length, HeadDim, 0, headStride, HeadDim, 1));
    }

    void IKeyValueStore<T>.CheckRoom(ReadOnlySpan<int> sequences, int tokens, string parameter)
    {
        foreach (int sequence in sequences) CheckRoom(sequence, tokens, parameter);
    }

    private ReadOnlyTensorSpan<T> View(NativeTensor<T> memory, int sequence, int length)
    {
        T* origin = memory.Pointer + (nint)sequence * KvHeads * Capacity * HeadDim;
        nint reach = (nint)KvHeads * Capacity * HeadDim;
        return TensorLayout.View(origin, reach, [1, KvHeads, length, HeadDim], [reach, (nint)Capacity * HeadDim, HeadDim, 1]);
    }

    /// <exception cref="ArgumentException">appending <paramref name="tokens"/> would overflow the sequence (nothing is written).</exception>
    internal void CheckRoom(int sequence, int tokens, string parameter)
    {
        CheckSequence(sequence);
        if ((long)_lengths[sequence] + tokens > Capacity)
            throw new ArgumentException(
                $"The KV cache's sequence {sequence} holds {_lengths[sequence]} of {Capacity} tokens; appending {tokens} would overflow it. Nothing was written; Reset the sequence or use a larger cache.", parameter);
    }

    /// <summary>
    /// Stores <paramref name="tokens"/> new keys and values (rows of kvHeads · headDim floats, <paramref name="rowStride"/>
    /// apart) after what the sequence holds, rounding to <typeparamref name="T"/>, and advances its length.
    /// </summary>
    void IKeyValueStore<T>.Append(int sequence, float* keys, float* values, nint rowStride, int tokens)
    {
        int start = _lengths[sequence];
        for (int h = 0; h < KvHeads; h++)
            for (int t = 0; t < tokens; t++)
            {
                nint at = (((nint)sequence * KvHeads + h) * Capacity + start + t) * HeadDim;
                ElementConversion.FromSingle(keys + t * rowStride + (nint)h * HeadDim, HeadDim, _keys.Pointer + at, 1);
                ElementConversion.FromSingle(values + t * rowStride + (nint)h * HeadDim, HeadDim, _values.Pointer + at, 1);
            }
        _lengths[sequence] = start + tokens;
    }

    private int CheckSequence(int sequence)
    {
        if ((uint)sequence >= (uint)Sequences)
            throw new ArgumentOutOfRangeException(nameof(sequence), $"sequence is {sequence}; the cache has sequences 0..{Sequences - 1}.");
        return sequence;
    }

    /// <summary>Frees the cache's native memory.</summary>
    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
