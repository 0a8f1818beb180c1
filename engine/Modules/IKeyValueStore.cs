using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// What a layer's decode path needs of a KV cache, contiguous (<see cref="KeyValueCache{T}"/>) or paged
/// (<see cref="PagedKeyValueCache{T}"/>): room checks before anything is written, appends, and each sequence's keys
/// as segments of uniform strides (one for a contiguous slot, one per page) for the attention kernel.
/// </summary>
internal unsafe interface IKeyValueStore<T> where T : unmanaged
{
    int Sequences { get; }
    int KvHeads { get; }
    int HeadDim { get; }
    int Length(int sequence);

    /// <summary>Throws (naming <paramref name="parameter"/>) unless every listed sequence can take <paramref name="tokens"/> more; writes nothing.</summary>
    void CheckRoom(ReadOnlySpan<int> sequences, int tokens, string parameter);

    /// <summary>Stores new keys and values (rows of kvHeads · headDim floats, rowStride apart) and advances the sequence.</summary>
    void Append(int sequence, float* keys, float* values, nint rowStride, int tokens);

    /// <summary>
    /// How many segments the first <paramref name="length"/> keys of a sequence span: exact for keys it holds, an upper
    /// bound for keys past them (before an append, which may extend its last segment).
    /// </summary>
    int SegmentCount(int sequence, int length);

    /// <summary>Segment <paramref name="index"/> of a sequence's first <paramref name="length"/> keys: its first key and [1, kvHeads, count, headDim] views.</summary>
    (int FirstKey, int Count, RawStrided4<T> Keys, RawStrided4<T> Values) Segment(int sequence, int index, int length);

    /// <summary>Tokens per page of a paged store, whose sequences the decode kernel reads through their block tables; 0 for a contiguous one.</summary>
    int PageSize { get; }

    /// <summary>
    /// A paged store's first <paramref name="length"/> keys of a sequence: writes the numbers of the pages holding them to
    /// <paramref name="table"/> (⌈length / PageSize⌉ entries) and returns [1, kvHeads, length, headDim] views of the pool
    /// as if those pages lay in order from page 0 (<see cref="Kernels.Cpu.Decode.KeyValuePages"/>).
    /// </summary>
    (RawStrided4<T> Keys, RawStrided4<T> Values) Pages(int sequence, int length, int* table);
}
