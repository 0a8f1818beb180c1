using AttentionEngine.Bindings.Memory;

namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// Native memory a thread keeps between calls (one instance per thread and nesting depth through
/// <see cref="NestedPerThread{T}"/>), 64-byte aligned, grown only when a call needs more: a steady stream of calls
/// allocates nothing. Each use derives its own type, so two uses on one thread never share a buffer.
/// </summary>
internal abstract unsafe class GrowingBuffer
{
    private AlignedMemoryHandle? _memory;

    /// <summary>At least <paramref name="bytes"/> bytes; the contents of a grown buffer are not kept.</summary>
    protected byte* Ensure(long bytes)
    {
        if (_memory is null || (long)_memory.ByteCount < bytes)
        {
            _memory?.Dispose();
            _memory = null; // a failed allocation leaves no freed handle behind
            _memory = AlignedMemoryHandle.Allocate((nuint)Math.Max(bytes, 64));
        }
        return (byte*)_memory.DangerousGetHandle();
    }

    /// <summary>Bytes held now (0 when nothing is).</summary>
    protected long HeldBytes => _memory is null ? 0 : (long)_memory.ByteCount;

    /// <summary>Frees the memory; the next <see cref="Ensure"/> allocates again.</summary>
    protected void Release()
    {
        _memory?.Dispose();
        _memory = null;
    }
}
