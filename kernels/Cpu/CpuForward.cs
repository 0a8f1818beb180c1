using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>Runs the CPU flash-attention forward of one job on the chosen vector width and thread count.</summary>
internal static class CpuForward
{
    public static void Run<T>(in CpuAttentionJob<T> job, CpuIsa isa, int maxDegreeOfParallelism) where T : unmanaged
    {
        switch (CpuIsaSelection.Resolve(isa))
        {
            case CpuIsa.Avx512: Run<T, Vector512Ops, Vector512<float>>(job, maxDegreeOfParallelism); break;
            case CpuIsa.Avx2: Run<T, Vector256Ops, Vector256<float>>(job, maxDegreeOfParallelism); break;
            default: Run<T, Vector128Ops, Vector128<float>>(job, maxDegreeOfParallelism); break;
        }
    }

    private static void Run<T, TOps, TVec>(CpuAttentionJob<T> job, int maxDegreeOfParallelism)
        where T : unmanaged where TOps : struct, IVectorOps<TVec> where TVec : struct
    {
        int tasks = FlashForwardKernel<T, TOps, TVec>.TaskCount(job);
        if (maxDegreeOfParallelism == 1 || tasks == 1)
        {
            for (int task = 0; task < tasks; task++) FlashForwardKernel<T, TOps, TVec>.RunTask(job, task);
            return;
        }
        Parallel.For(0, tasks, new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism },
            task => FlashForwardKernel<T, TOps, TVec>.RunTask(job, task));
    }
}
