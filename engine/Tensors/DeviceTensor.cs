using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine;

/// <summary>
/// A tensor in GPU memory, for data that stays on the device between calls (<see cref="CudaBackend"/>'s device
/// overloads read and write it in place). Any lengths and any non-negative strides, like <see cref="NativeTensor{T}"/>:
/// FlashAttention's [B, S, H, D] memory is logical [B, H, S, D] with <see cref="TensorLayout.Permuted"/> strides.
/// <para>
/// Either owns its memory (<see cref="Allocate"/>, <see cref="Zeros"/>, <see cref="CopyOf"/>; freed by Dispose or the
/// finalizer) or wraps memory another library allocated (<see cref="FromAddress"/>; never freed here). Every
/// operation makes the tensor's device current on the calling thread. Dispose tensors before their
/// <see cref="CudaDevice"/>: its primary context holds the memory.
/// </para>
/// </summary>
public sealed unsafe class DeviceTensor<T> : IDisposable where T : unmanaged
{
    private readonly DeviceMemory? _memory; // null when wrapping memory allocated elsewhere
    private readonly ulong _foreignAddress;
    private readonly nint[] _lengths;
    private readonly nint[] _strides;
    private bool _disposed;

    private DeviceTensor(CudaDevice device, ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, DeviceMemory? memory, ulong foreignAddress)
    {
        Device = device;
        _lengths = lengths.ToArray();
        _strides = strides.ToArray();
        _memory = memory;
        _foreignAddress = foreignAddress;
        StorageLength = TensorLayout.StorageLength(lengths, strides);
        FlattenedLength = 1;
        foreach (var length in lengths) FlattenedLength *= length;
    }

    /// <summary>The GPU holding the memory.</summary>
    public CudaDevice Device { get; }

    /// <summary>Logical lengths, outermost first.</summary>
    public ReadOnlySpan<nint> Lengths => _lengths;

    /// <summary>Element strides of each logical dimension.</summary>
    public ReadOnlySpan<nint> Strides => _strides;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _lengths.Length;

    /// <summary>Number of logical elements.</summary>
    public nint FlattenedLength { get; }

    /// <summary>Elements of memory the layout spans (more than <see cref="FlattenedLength"/> for padded layouts).</summary>
    public nint StorageLength { get; }

    /// <summary>Bytes of memory the layout spans.</summary>
    public long StorageBytes => (long)StorageLength * Unsafe.SizeOf<T>();

    /// <summary>True when this tensor allocated its memory (and frees it on Dispose).</summary>
    public bool OwnsMemory => _memory is not null;

    /// <summary>True once this tensor or its device was disposed.</summary>
    public bool IsDisposed => _disposed || Device.IsDisposed;

    /// <summary>Device address of the element at index 0 in every dimension.</summary>
    /// <exception cref="ObjectDisposedException">the tensor or its device was disposed.</exception>
    public ulong Address
    {
        get
        {
            ThrowIfDisposed();
            return _memory?.Address ?? _foreignAddress;
        }
    }

    /// <summary>A zero-filled tensor with the given layout (row-major when <paramref name="strides"/> is empty).</summary>
    /// <exception cref="ArgumentException">a length below 1, a negative stride, or a rank mismatch; the message names it.</exception>
    public static DeviceTensor<T> Allocate(CudaDevice device, ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        var layout = strides.IsEmpty ? TensorLayout.Contiguous(lengths) : strides;
        TensorLayout.ThrowIfInvalid(lengths, layout);
        long bytes = checked((long)TensorLayout.StorageLength(lengths, layout) * Unsafe.SizeOf<T>());
        device.MakeCurrent();
        var memory = DeviceMemory.Allocate((nuint)bytes);
        try
        {
            memory.Clear();
            return new DeviceTensor<T>(device, lengths, layout, memory, 0);
        }
        catch
        {
            memory.Dispose();
            throw;
        }
    }

    /// <summary>A zero-filled row-major tensor.</summary>
    public static DeviceTensor<T> Zeros(CudaDevice device, params ReadOnlySpan<nint> lengths) => Allocate(device, lengths);

    /// <summary>A device copy of a host tensor of any strides, laid out row-major or with <paramref name="strides"/>.</summary>
    public static DeviceTensor<T> CopyOf(CudaDevice device, scoped in ReadOnlyTensorSpan<T> source, ReadOnlySpan<nint> strides = default)
    {
        var tensor = Allocate(device, source.Lengths, strides);
        try
        {
            tensor.CopyFrom(source);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Wraps device memory allocated elsewhere (another library's tensor) without copying or taking ownership: the
    /// caller keeps the memory alive and on <paramref name="device"/>'s primary context while this tensor is used.
    /// </summary>
    public static DeviceTensor<T> FromAddress(CudaDevice device, ulong address, ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides)
    {
        ArgumentNullException.ThrowIfNull(device);
        ObjectDisposedException.ThrowIf(device.IsDisposed, device);
        TensorLayout.ThrowIfInvalid(lengths, strides);
        if (address == 0) throw new ArgumentException("address is 0 (a null device pointer).", nameof(address));
        if (address % (ulong)Unsafe.SizeOf<T>() != 0)
            throw new ArgumentException($"address 0x{address:x} is not aligned to {typeof(T).Name}'s {Unsafe.SizeOf<T>()} bytes.", nameof(address));
        return new DeviceTensor<T>(device, lengths, strides, null, address);
    }

    /// <summary>Copies every logical element of <paramref name="source"/> (same lengths, any strides) to the device.</summary>
    public void CopyFrom(scoped in ReadOnlyTensorSpan<T> source)
    {
        ThrowIfShapeDiffers(source.Lengths, nameof(source));
        using var staging = new Staging(this);
        // A layout with gaps keeps what lies in them: they may belong to someone else's tensor (FromAddress).
        if (StorageLength != FlattenedLength) staging.Download();
        ref T from = ref Unsafe.AsRef(in source.GetPinnableReference());
        Span<nint> i1 = stackalloc nint[Rank], i2 = stackalloc nint[Rank];
        var src = new StridedOffsets(source.Lengths, source.Strides, i1);
        var dst = new StridedOffsets(_lengths, _strides, i2);
        while (src.MoveNext() && dst.MoveNext()) staging.Elements[dst.Current] = Unsafe.Add(ref from, src.Current);
        DeviceCopy.ToDevice(Address, staging.Elements, staging.Bytes);
    }

    /// <summary>Copies every logical element to <paramref name="destination"/> (same lengths, any strides) on the host.</summary>
    public void CopyTo(scoped in TensorSpan<T> destination)
    {
        ThrowIfShapeDiffers(destination.Lengths, nameof(destination));
        using var staging = new Staging(this);
        staging.Download();
        ref T to = ref destination.GetPinnableReference();
        Span<nint> i1 = stackalloc nint[Rank], i2 = stackalloc nint[Rank];
        var src = new StridedOffsets(_lengths, _strides, i1);
        var dst = new StridedOffsets(destination.Lengths, destination.Strides, i2);
        while (src.MoveNext() && dst.MoveNext()) Unsafe.Add(ref to, dst.Current) = staging.Elements[src.Current];
    }

    /// <summary>The logical elements in row-major order, copied to a managed array.</summary>
    public T[] ToArray()
    {
        var result = new T[FlattenedLength];
        CopyTo(new TensorSpan<T>(result, _lengths, TensorLayout.SpanStrides(_lengths, TensorLayout.Contiguous(_lengths))));
        return result;
    }

    /// <summary>Frees owned memory (wrapped memory is left to its owner). Later use throws ObjectDisposedException.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_memory is null) return;
        // The free needs the context current on this thread; a disposed device has already lost the memory with it.
        if (!Device.IsDisposed) Device.MakeCurrent();
        _memory.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"DeviceTensor<{typeof(T).Name}>[{string.Join(", ", _lengths)}] strides [{string.Join(", ", _strides)}] on device {Device.Ordinal}";

    internal void ThrowIfDisposed()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ObjectDisposedException.ThrowIf(Device.IsDisposed, Device);
    }

    /// <summary>Native host memory mirroring the tensor's whole storage (no 2^31-element limit of arrays).</summary>
    private readonly struct Staging : IDisposable
    {
        private readonly DeviceTensor<T> _tensor;

        public Staging(DeviceTensor<T> tensor)
        {
            tensor.Device.MakeCurrent();
            tensor.ThrowIfDisposed();
            _tensor = tensor;
            Bytes = (nuint)tensor.StorageBytes;
            Elements = (T*)NativeMemory.Alloc(Math.Max(Bytes, 1));
        }

        public T* Elements { get; }
        public nuint Bytes { get; }

        public void Download() => DeviceCopy.ToHost(Elements, _tensor.Address, Bytes);

        public void Dispose() => NativeMemory.Free(Elements);
    }

    private void ThrowIfShapeDiffers(ReadOnlySpan<nint> lengths, string name)
    {
        if (!lengths.SequenceEqual(_lengths))
            throw new ArgumentException($"{name} has lengths [{string.Join(", ", lengths.ToArray())}]; this device tensor has [{string.Join(", ", _lengths)}].", name);
    }
}
