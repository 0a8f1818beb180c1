using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionEngine.Bindings.Memory;

namespace AttentionEngine;

/// <summary>
/// A tensor in 64-byte-aligned native memory with any non-negative strides. Owns its memory: dispose it (or let
/// the SafeHandle's finalizer free it). Views are System.Numerics.Tensors spans, so it plugs into every API taking
/// <see cref="ReadOnlyTensorSpan{T}"/> without copies.
/// </summary>
public sealed unsafe class NativeTensor<T> : IDisposable where T : unmanaged
{
    private readonly AlignedMemoryHandle _memory;
    private readonly nint[] _lengths;
    private readonly nint[] _strides;
    private readonly nint[] _spanStrides; // TensorLayout.SpanStrides: what System.Numerics.Tensors accepts

    private NativeTensor(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides)
    {
        TensorLayout.ThrowIfInvalid(lengths, strides);
        _lengths = lengths.ToArray();
        _strides = strides.ToArray();
        _spanStrides = TensorLayout.SpanStrides(lengths, strides);
        StorageLength = TensorLayout.StorageLength(lengths, strides);
        FlattenedLength = 1;
        foreach (var length in lengths) FlattenedLength = checked(FlattenedLength * length);
        _memory = AlignedMemoryHandle.Allocate(checked((nuint)StorageLength * (nuint)sizeof(T)));
    }

    /// <summary>Logical lengths, outermost first.</summary>
    public ReadOnlySpan<nint> Lengths => _lengths;

    /// <summary>Element strides of each logical dimension.</summary>
    public ReadOnlySpan<nint> Strides => _strides;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _lengths.Length;

    /// <summary>Number of logical elements.</summary>
    public nint FlattenedLength { get; }

    /// <summary>Number of elements of storage (larger than <see cref="FlattenedLength"/> for padded layouts).</summary>
    public nint StorageLength { get; }

    /// <summary>True once disposed (the memory is freed).</summary>
    public bool IsDisposed => _memory.IsClosed;

    /// <summary>Address of the element at index 0 in every dimension.</summary>
    public T* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_memory.IsClosed, this);
            return (T*)_memory.DangerousGetHandle();
        }
    }

    /// <summary>The whole storage, padding included.</summary>
    public Span<T> Storage => new(Pointer, checked((int)StorageLength));

    /// <summary>A writable view of the elements with this tensor's lengths and strides (<see cref="TensorLayout.View{T}(Span{T}, ReadOnlySpan{nint}, ReadOnlySpan{nint})"/> builds views with strides System.Numerics.Tensors refuses).</summary>
    public TensorSpan<T> AsTensorSpan() => new(Pointer, StorageLength, _lengths, _spanStrides);

    /// <summary>A read-only view of the elements with this tensor's lengths and strides.</summary>
    public ReadOnlyTensorSpan<T> AsReadOnlyTensorSpan() => new(Pointer, StorageLength, _lengths, _spanStrides);

    /// <summary>The read-only view (<see cref="AsReadOnlyTensorSpan"/>), so a tensor passes straight to <see cref="Attention.Forward{T}(System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.TensorSpan{T}, in AttentionOptions)"/>.</summary>
    public static implicit operator ReadOnlyTensorSpan<T>(NativeTensor<T> tensor) => tensor.AsReadOnlyTensorSpan();

    /// <summary>The writable view (<see cref="AsTensorSpan"/>).</summary>
    public static implicit operator TensorSpan<T>(NativeTensor<T> tensor) => tensor.AsTensorSpan();

    /// <summary>The element at a logical index.</summary>
    public ref T this[params ReadOnlySpan<nint> indices]
    {
        get
        {
            if (indices.Length != _lengths.Length)
                throw new ArgumentException($"Got {indices.Length} indices for a rank-{_lengths.Length} tensor.", nameof(indices));
            nint offset = 0;
            for (int d = 0; d < indices.Length; d++)
            {
                if ((nuint)indices[d] >= (nuint)_lengths[d])
                    throw new IndexOutOfRangeException($"Index {indices[d]} is outside dimension {d} of length {_lengths[d]}.");
                offset += indices[d] * _strides[d];
            }
            return ref Pointer[offset];
        }
    }

    /// <summary>A tensor with the given layout (see <see cref="TensorLayout"/>), zero-filled.</summary>
    public static NativeTensor<T> Allocate(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides) => new(lengths, strides);

    /// <summary>A contiguous zero-filled tensor.</summary>
    public static NativeTensor<T> Zeros(params ReadOnlySpan<nint> lengths) => new(lengths, TensorLayout.Contiguous(lengths));

    /// <summary>A contiguous tensor copied from <paramref name="data"/> in row-major order.</summary>
    public static NativeTensor<T> FromArray(ReadOnlySpan<T> data, params ReadOnlySpan<nint> lengths)
    {
        var tensor = Zeros(lengths);
        if (data.Length != tensor.FlattenedLength)
        {
            tensor.Dispose();
            throw new ArgumentException($"data has {data.Length} elements; the lengths [{string.Join(", ", lengths.ToArray())}] need {tensor.FlattenedLength}.", nameof(data));
        }
        data.CopyTo(tensor.Storage);
        return tensor;
    }

    /// <summary>A contiguous copy of any strided tensor span.</summary>
    public static NativeTensor<T> CopyOf(scoped in ReadOnlyTensorSpan<T> source, ReadOnlySpan<nint> strides = default)
    {
        var tensor = strides.IsEmpty ? Zeros(source.Lengths) : Allocate(source.Lengths, strides);
        tensor.CopyFrom(source);
        return tensor;
    }

    /// <summary>Copies every logical element of <paramref name="source"/> (same lengths, any strides) into this tensor.</summary>
    public void CopyFrom(scoped in ReadOnlyTensorSpan<T> source)
    {
        if (!source.Lengths.SequenceEqual(Lengths))
            throw new ArgumentException($"source has lengths [{string.Join(", ", source.Lengths.ToArray())}]; expected [{string.Join(", ", _lengths)}].", nameof(source));
        ref T from = ref Unsafe.AsRef(in source.GetPinnableReference());
        T* to = Pointer;
        Span<nint> i1 = stackalloc nint[Rank], i2 = stackalloc nint[Rank];
        var src = new StridedOffsets(source.Lengths, source.Strides, i1);
        var dst = new StridedOffsets(_lengths, _strides, i2);
        while (src.MoveNext() && dst.MoveNext())
            to[dst.Current] = Unsafe.Add(ref from, src.Current);
    }

    /// <summary>The logical elements in row-major order, as a managed array.</summary>
    public T[] ToArray()
    {
        var result = new T[checked((int)FlattenedLength)];
        T* from = Pointer;
        Span<nint> scratch = stackalloc nint[Rank];
        var offsets = new StridedOffsets(_lengths, _strides, scratch);
        int n = 0;
        while (offsets.MoveNext()) result[n++] = from[offsets.Current];
        return result;
    }

    /// <summary>Sets every logical element (padding untouched).</summary>
    public void Fill(T value)
    {
        T* to = Pointer;
        Span<nint> scratch = stackalloc nint[Rank];
        var offsets = new StridedOffsets(_lengths, _strides, scratch);
        while (offsets.MoveNext()) to[offsets.Current] = value;
    }

    /// <inheritdoc/>
    public void Dispose() => _memory.Dispose();

    /// <inheritdoc/>
    public override string ToString() =>
        $"NativeTensor<{typeof(T).Name}>[{string.Join(", ", _lengths)}] strides [{string.Join(", ", _strides)}]";
}
