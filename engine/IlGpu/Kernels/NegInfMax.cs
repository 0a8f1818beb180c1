using ILGPU;
using ILGPU.Algorithms.ScanReduceOperations;

namespace AttentionEngine.Kernels.IlGpu;

/// <summary>
/// Max with −infinity as identity: ILGPU.Algorithms' MaxFloat uses float.MinValue, which would turn a row whose keys
/// are all hidden (every score −infinity) into a finite maximum.
/// </summary>
internal readonly struct NegInfMax : IScanReduceOperation<float>
{
    public string CLCommand => "max";
    public float Identity => float.NegativeInfinity;
    public float Apply(float first, float second) => first > second ? first : second;
    public void AtomicApply(ref float target, float value) => Atomic.Max(ref target, value);
}

/// <summary>Sum with 0 as identity (spelled out beside <see cref="NegInfMax"/> so both reductions read alike).</summary>
internal readonly struct FloatSum : IScanReduceOperation<float>
{
    public string CLCommand => "add";
    public float Identity => 0f;
    public float Apply(float first, float second) => first + second;
    public void AtomicApply(ref float target, float value) => Atomic.Add(ref target, value);
}
