using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>Runs one product C = A · B (+ bias) on the chosen vector width and thread count.</summary>
internal static class CpuGemm
{
    public static void Run<TA, TB, TC>(in GemmJob<TA, TB, TC> job, CpuIsa isa, int maxDegreeOfParallelism)
        where TA : unmanaged where TB : unmanaged where TC : unmanaged
    {
        switch (CpuIsaSelection.Resolve(isa))
        {
            case CpuIsa.Avx512: GemmWork<TA, TB, TC, Vector512Ops, Vector512<float>>.Run(job, maxDegreeOfParallelism); break;
            case CpuIsa.Avx2: GemmWork<TA, TB, TC, Vector256Ops, Vector256<float>>.Run(job, maxDegreeOfParallelism); break;
            default: GemmWork<TA, TB, TC, Vector128Ops, Vector128<float>>.Run(job, maxDegreeOfParallelism); break;
        }
    }
}
