using System.Runtime.InteropServices;
using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine;

/// <summary>
/// The temporary device buffers of one CUDA call (packed inputs, uploaded masks), freed together. The caller waits
/// for the call's stream before disposing, since queued work may still read them.
/// </summary>
internal sealed class DeviceScratch : IDisposable
{
    private readonly List<DeviceMemory> _buffers = [];

    public bool IsEmpty => _buffers.Count == 0;

    public DeviceMemory Allocate(long bytes)
    {
        var memory = DeviceMemory.Allocate(checked((nuint)Math.Max(bytes, 1)));
        _buffers.Add(memory);
        return memory;
    }

    public DeviceMemory Upload<TElement>(ReadOnlySpan<TElement> data) where TElement : unmanaged
    {
        var bytes = MemoryMarshal.AsBytes(data);
        var memory = Allocate(bytes.Length);
        memory.CopyFrom(bytes);
        return memory;
    }

    public void Dispose()
    {
        foreach (var buffer in _buffers) buffer.Dispose();
        _buffers.Clear();
    }
}
