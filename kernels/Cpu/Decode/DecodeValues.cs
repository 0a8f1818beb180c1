using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// O = O · rescale + Σ_j p_j · v_j for one row: the row's output is held in registers four vectors at a time while
/// the value block streams past, each probability broadcast once per key.
/// </summary>
internal static unsafe class DecodeValues<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <param name="values">V rows, ldv apart, dvVectors · Count readable elements each (float, BFloat16 or Half)</param>
    public static void Accumulate<TValue>(float* probabilities, int keyCount, TValue* values, nint ldv, int dvVectors, float* output, float rescale)
        where TValue : unmanaged
    {
        int c = TOps.Count;
        int cv = 0;
        for (; cv + 4 <= dvVectors; cv += 4) FourVectors(probabilities, keyCount, values + cv * c, ldv, output + cv * c, rescale);
        for (; cv < dvVectors; cv++) OneVector(probabilities, keyCount, values + cv * c, ldv, output + cv * c, rescale);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec L<TValue>(TValue* source) where TValue : unmanaged => ElementLoads<TOps, TVec>.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourVectors<TValue>(float* p, int n, TValue* v, nint ldv, float* o, float rescale) where TValue : unmanaged
    {
        int c = TOps.Count;
        TVec s = TOps.Broadcast(rescale);
        TVec a0 = TOps.Multiply(TOps.Load(o), s), a1 = TOps.Multiply(TOps.Load(o + c), s);
        TVec a2 = TOps.Multiply(TOps.Load(o + 2 * c), s), a3 = TOps.Multiply(TOps.Load(o + 3 * c), s);
        for (int j = 0; j < n; j++)
        {
            TValue* vj = v + j * ldv;
            TVec b = TOps.Broadcast(p[j]);
            a0 = TOps.MultiplyAdd(b, L(vj), a0);
            a1 = TOps.MultiplyAdd(b, L(vj + c), a1);
            a2 = TOps.MultiplyAdd(b, L(vj + 2 * c), a2);
            a3 = TOps.MultiplyAdd(b, L(vj + 3 * c), a3);
        }
        TOps.Store(o, a0); TOps.Store(o + c, a1); TOps.Store(o + 2 * c, a2); TOps.Store(o + 3 * c, a3);
    }

    private static void OneVector<TValue>(float* p, int n, TValue* v, nint ldv, float* o, float rescale) where TValue : unmanaged
    {
        TVec a = TOps.Multiply(TOps.Load(o), TOps.Broadcast(rescale));
        for (int j = 0; j < n; j++) a = TOps.MultiplyAdd(TOps.Broadcast(p[j]), L(v + j * ldv), a);
        TOps.Store(o, a);
    }
}
