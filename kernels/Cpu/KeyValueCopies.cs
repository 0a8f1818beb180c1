using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// A calling thread's memory for one call's float copies of K and V (<see cref="KeyValueWidening"/>). Kept for the next
/// call up to <see cref="RetainedBytes"/>: a fresh block of that size costs its zeroing and a page fault per 4 KB, about
/// a tenth of an N = 2048, H = 16, D = 64 call. A larger block is freed after its call, where the call's work (quadratic
/// in N against the copy's linear size) makes that cost a few percent at most.
/// </summary>
internal sealed unsafe class KeyValueCopies : GrowingBuffer
{
    /// <summary>Largest block kept between calls.</summary>
    public const long RetainedBytes = 64L << 20;

    /// <summary>At least <paramref name="floats"/> floats, 64-byte aligned; contents undefined.</summary>
    public float* Floats(long floats) => (float*)Ensure(floats * sizeof(float));

    /// <summary>Frees the block if it is larger than <see cref="RetainedBytes"/>; called when the call is over.</summary>
    public void Trim()
    {
        if (HeldBytes > RetainedBytes) Release();
    }
}
