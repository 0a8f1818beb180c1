using AttentionEngine.Bindings.Memory;

namespace AttentionEngine;

/// <summary>
/// A thread's float buffers for module forward calls (projections, attention output, gates), grown when a call needs
/// more and kept between calls: a steady stream of layer calls allocates no managed memory, and concurrent calls on
/// one module, from different threads, never share a buffer.
/// </summary>
internal sealed unsafe class ModuleScratch
{
    /// <summary>The slot of <see cref="HeadMajor"/>'s copies, used only around one attention call.</summary>
    public const int KeyValueSlot = 2;

    [ThreadStatic] private static ModuleScratch?[]? _slots;
    private AlignedMemoryHandle? _memory;
    private nuint _capacity;

    /// <summary>
    /// This thread's scratch number <paramref name="slot"/> (0 for a layer call's working buffers, 1 for a caller of
    /// that call, such as the image path's result before the residual, <see cref="KeyValueSlot"/> for the head-major keys
    /// and values attention reads), with room for at least <paramref name="floats"/> floats.
    /// </summary>
    public static float* Rent(long floats, int slot = 0)
    {
        var slots = _slots ??= new ModuleScratch?[3];
        var scratch = slots[slot] ??= new ModuleScratch();
        nuint needed = (nuint)Math.Max(16, floats);
        if (needed > scratch._capacity)
        {
            scratch._memory?.Dispose();
            scratch._memory = AlignedMemoryHandle.Allocate(needed * sizeof(float));
            scratch._capacity = needed;
        }
        return (float*)scratch._memory!.DangerousGetHandle();
    }
}
