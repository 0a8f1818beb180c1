using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// A calling thread's buffer for a product's shared packed A and B (<see cref="GemmWork{TA, TB, TC, TOps, TVec}"/>):
/// the workers only read it during the call that filled it.
/// </summary>
internal sealed unsafe class GemmSharedPanels : GrowingBuffer
{
    /// <summary>At least <paramref name="floats"/> floats, 64-byte aligned.</summary>
    public float* Floats(long floats) => (float*)Ensure(floats * sizeof(float));
}
