using System.Runtime.InteropServices;

namespace AttentionEngine.Bindings.Memory;

/// <summary>
/// Owns one block of aligned native memory from <see cref="NativeMemory.AlignedAlloc(nuint, nuint)"/>.
/// A SafeHandle so the block is freed exactly once on every path: Dispose, finalizer, or an exception mid-construction.
/// </summary>
public sealed unsafe class AlignedMemoryHandle : SafeHandle
{
    /// <summary>Alignment of every block: one cache line, and one full AVX-512 vector.</summary>
    public const int Alignment = 64;

    private AlignedMemoryHandle() : base(nint.Zero, ownsHandle: true) { }

    /// <summary>Size of the block in bytes.</summary>
    public nuint ByteCount { get; private set; }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == nint.Zero;

    /// <summary>Allocates <paramref name="byteCount"/> zeroed bytes aligned to <see cref="Alignment"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">byteCount is zero.</exception>
    /// <exception cref="OutOfMemoryException">the allocation failed.</exception>
    public static AlignedMemoryHandle Allocate(nuint byteCount)
    {
        ArgumentOutOfRangeException.ThrowIfZero(byteCount);
        var owner = new AlignedMemoryHandle();
        // Allocate inside the handle's lifetime so no path can leak the block between allocation and ownership.
        void* block = NativeMemory.AlignedAlloc(byteCount, Alignment);
        if (block is null)
        {
            owner.SetHandleAsInvalid();
            throw new OutOfMemoryException($"Could not allocate {byteCount} bytes of {Alignment}-byte-aligned native memory.");
        }
        NativeMemory.Clear(block, byteCount);
        owner.SetHandle((nint)block);
        owner.ByteCount = byteCount;
        return owner;
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle()
    {
        NativeMemory.AlignedFree((void*)handle);
        return true;
    }
}
