namespace AttentionEngine.Bindings.Cuda;

/// <summary>Device memory (cuMemAlloc), freed on every path.</summary>
public sealed unsafe class DeviceMemory : CudaHandle
{
    /// <summary>The size the buffer was allocated with, in bytes.</summary>
    public nuint ByteCount { get; private set; }

    /// <summary>The device address, for kernel arguments.</summary>
    public ulong Address => (ulong)Value;

    /// <summary>Allocates <paramref name="bytes"/> bytes of device memory (at least one byte, so the address is always valid).</summary>
    public static DeviceMemory Allocate(nuint bytes)
    {
        var memory = new DeviceMemory();
        CudaException.Check(CudaDriverNative.cuMemAlloc_v2(out ulong address, Math.Max(bytes, 1)), $"cuMemAlloc({bytes} bytes)");
        memory.Own((nint)address);
        memory.ByteCount = bytes;
        return memory;
    }

    /// <summary>Copies <paramref name="source"/> to the start of this buffer; with a stream, the copy is queued on it and awaited before returning.</summary>
    /// <exception cref="ArgumentException">the source is longer than the buffer.</exception>
    public void CopyFrom(ReadOnlySpan<byte> source, CudaStream? stream = null)
    {
        ThrowIfTooLong(source.Length);
        if (stream is null)
        {
            DeviceCopy.ToDevice(Address, source);
            return;
        }
        fixed (byte* data = source)
        {
            // The span is pinned only for this call: an asynchronous copy must finish before it returns.
            CudaException.Check(CudaDriverNative.cuMemcpyHtoDAsync_v2(Address, data, (nuint)source.Length, stream.Value), "cuMemcpyHtoDAsync");
            stream.Synchronize();
        }
    }

    /// <summary>Copies the start of this buffer into <paramref name="destination"/> (synchronous).</summary>
    /// <exception cref="ArgumentException">the destination is longer than the buffer.</exception>
    public void CopyTo(Span<byte> destination)
    {
        ThrowIfTooLong(destination.Length);
        DeviceCopy.ToHost(destination, Address);
    }

    /// <summary>Sets the whole buffer to zero bytes.</summary>
    public void Clear() => DeviceCopy.Clear(Address, ByteCount);

    private void ThrowIfTooLong(int length)
    {
        if ((nuint)length > ByteCount)
            throw new ArgumentException($"the copy is {length} bytes; this device buffer holds {ByteCount}.");
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => CudaDriverNative.cuMemFree_v2((ulong)handle) == 0;
}

/// <summary>Page-locked host memory (cuMemAllocHost): the source and target of truly asynchronous copies.</summary>
public sealed unsafe class PinnedHostMemory : CudaHandle
{
    /// <summary>The size the buffer was allocated with, in bytes.</summary>
    public nuint ByteCount { get; private set; }

    /// <summary>The memory as a span (buffers under 2 GiB).</summary>
    public Span<byte> Bytes => new((void*)Value, checked((int)ByteCount));

    /// <summary>Allocates <paramref name="bytes"/> bytes of page-locked host memory.</summary>
    public static PinnedHostMemory Allocate(nuint bytes)
    {
        var memory = new PinnedHostMemory();
        CudaException.Check(CudaDriverNative.cuMemAllocHost_v2(out nint pointer, Math.Max(bytes, 1)), $"cuMemAllocHost({bytes} bytes)");
        memory.Own(pointer);
        memory.ByteCount = bytes;
        return memory;
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => CudaDriverNative.cuMemFreeHost(handle) == 0;
}

/// <summary>
/// Synchronous copies by raw device address, for memory this process did not allocate through
/// <see cref="DeviceMemory"/> (another library's buffers). The caller vouches that the range is allocated.
/// </summary>
public static unsafe class DeviceCopy
{
    /// <summary>Host to device, from native host memory of any size.</summary>
    public static void ToDevice(ulong destination, void* source, nuint bytes)
    {
        if (bytes == 0) return;
        CudaException.Check(CudaDriverNative.cuMemcpyHtoD_v2(destination, source, bytes), $"cuMemcpyHtoD({bytes} bytes)");
    }

    /// <summary>Device to host, into native host memory of any size.</summary>
    public static void ToHost(void* destination, ulong source, nuint bytes)
    {
        if (bytes == 0) return;
        CudaException.Check(CudaDriverNative.cuMemcpyDtoH_v2(destination, source, bytes), $"cuMemcpyDtoH({bytes} bytes)");
    }

    /// <summary>Host to device, from a span.</summary>
    public static void ToDevice(ulong destination, ReadOnlySpan<byte> source)
    {
        fixed (byte* data = source) ToDevice(destination, data, (nuint)source.Length);
    }

    /// <summary>Device to host, into a span.</summary>
    public static void ToHost(Span<byte> destination, ulong source)
    {
        fixed (byte* data = destination) ToHost(data, source, (nuint)destination.Length);
    }

    /// <summary>Sets <paramref name="bytes"/> bytes at <paramref name="destination"/> to zero.</summary>
    public static void Clear(ulong destination, nuint bytes)
    {
        if (bytes == 0) return;
        CudaException.Check(CudaDriverNative.cuMemsetD8_v2(destination, 0, bytes), $"cuMemsetD8({bytes} bytes)");
    }
}
