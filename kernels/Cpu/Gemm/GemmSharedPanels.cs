using AttentionEngine.Bindings.Memory;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// A calling thread's buffer for a product's shared packed B (<see cref="GemmWork{TA, TB, TC, TOps, TVec}"/>), grown
/// when a product needs more and kept between calls, so steady products allocate nothing. One per calling thread and
/// nesting depth: the workers only read it during the call that filled it.
/// </summary>
internal sealed unsafe class GemmSharedPanels
{
    private AlignedMemoryHandle? _memory;
    private long _capacity;

    /// <summary>At least <paramref name="floats"/> floats, 64-byte aligned.</summary>
    public float* Floats(long floats)
    {
        if (floats > _capacity)
        {
            _memory?.Dispose();
            _memory = null;
            _capacity = 0; // a failed allocation leaves no stale capacity behind
            _memory = AlignedMemoryHandle.Allocate((nuint)floats * sizeof(float));
            _capacity = floats;
        }
        return (float*)_memory!.DangerousGetHandle();
    }
}
