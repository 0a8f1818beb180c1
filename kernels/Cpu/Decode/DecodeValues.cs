using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// O = O · rescale + Σ_j p_j · v_j for one row: the row's output is held in registers four vectors at a time while
/// the value block streams past, each probability broadcast once per key. Values read as <see cref="ScaledFiniteHalf"/>
/// are checked as they load; a piece (a few output vectors of one or four rows) that met an infinity or NaN stores
/// nothing and is done again as <see cref="ScaledHalf"/> from the same outputs.
/// </summary>
internal static unsafe class DecodeValues<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <param name="values">V rows, ldv apart, dvVectors · Count readable elements each (float, BFloat16 or Half)</param>
    public static void Accumulate<TValue>(float* probabilities, int keyCount, TValue* values, nint ldv, int dvVectors, float* output, float rescale)
        where TValue : unmanaged
    {
        int c = TOps.Count;
        int cv = 0;
        // With AVX-512's 32 registers, eight vectors at a time: one row's four accumulators are four FMA chains, half what
        // two pipes at four cycles' latency need, and each chain is as long as the block.
        if (c == 16)
            for (; cv + 8 <= dvVectors; cv += 8)
                if (!EightVectors(probabilities, keyCount, values + cv * c, ldv, output + cv * c, rescale))
                    EightVectors(probabilities, keyCount, (ScaledHalf*)(values + cv * c), ldv, output + cv * c, rescale);
        for (; cv + 4 <= dvVectors; cv += 4)
            if (!FourVectors(probabilities, keyCount, values + cv * c, ldv, output + cv * c, rescale))
                FourVectors(probabilities, keyCount, (ScaledHalf*)(values + cv * c), ldv, output + cv * c, rescale);
        for (; cv < dvVectors; cv++) OneVector(probabilities, keyCount, values + cv * c, ldv, output + cv * c, rescale);
    }

    /// <summary>
    /// As <see cref="Accumulate{TValue}"/> for four rows at once (rows <paramref name="pitch"/> apart in the
    /// probabilities and <paramref name="outputPitch"/> apart in the outputs): each value vector is loaded and
    /// converted once for the four rows.
    /// </summary>
    public static void AccumulateFourRows<TValue>(float* probabilities, int pitch, int keyCount, TValue* values, nint ldv, int dvVectors,
        float* output, int outputPitch, float* rescale) where TValue : unmanaged
    {
        int c = TOps.Count;
        int cv = 0;
        for (; cv + 2 <= dvVectors; cv += 2)
            if (!TwoVectorsFourRows(probabilities, pitch, keyCount, values + cv * c, ldv, output + cv * c, outputPitch, rescale))
                TwoVectorsFourRows(probabilities, pitch, keyCount, (ScaledHalf*)(values + cv * c), ldv, output + cv * c, outputPitch, rescale);
        for (; cv < dvVectors; cv++)
            for (int r = 0; r < 4; r++)
                OneVector(probabilities + r * pitch, keyCount, values + cv * c, ldv, output + r * outputPitch + cv * c, rescale[r]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TwoVectorsFourRows<TValue>(float* p, int pitch, int n, TValue* v, nint ldv, float* o, int outputPitch, float* rescale)
        where TValue : unmanaged
    {
        TVec largest = TOps.Zero;
        int c = TOps.Count;
        float* o0 = o, o1 = o + outputPitch, o2 = o + 2 * outputPitch, o3 = o + 3 * outputPitch;
        float* p0 = p, p1 = p + pitch, p2 = p + 2 * pitch, p3 = p + 3 * pitch;
        TVec s = TOps.Broadcast(rescale[0]);
        TVec a00 = TOps.Multiply(TOps.Load(o0), s), a01 = TOps.Multiply(TOps.Load(o0 + c), s);
        s = TOps.Broadcast(rescale[1]);
        TVec a10 = TOps.Multiply(TOps.Load(o1), s), a11 = TOps.Multiply(TOps.Load(o1 + c), s);
        s = TOps.Broadcast(rescale[2]);
        TVec a20 = TOps.Multiply(TOps.Load(o2), s), a21 = TOps.Multiply(TOps.Load(o2 + c), s);
        s = TOps.Broadcast(rescale[3]);
        TVec a30 = TOps.Multiply(TOps.Load(o3), s), a31 = TOps.Multiply(TOps.Load(o3 + c), s);
        for (int j = 0; j < n; j++)
        {
            TValue* vj = v + j * ldv;
            TVec v0 = L(vj), v1 = L(vj + c);
            ElementLoads<TOps, TVec>.Track<TValue>(ref largest, v0, v1);
            TVec b = TOps.Broadcast(p0[j]);
            a00 = TOps.MultiplyAdd(b, v0, a00); a01 = TOps.MultiplyAdd(b, v1, a01);
            b = TOps.Broadcast(p1[j]);
            a10 = TOps.MultiplyAdd(b, v0, a10); a11 = TOps.MultiplyAdd(b, v1, a11);
            b = TOps.Broadcast(p2[j]);
            a20 = TOps.MultiplyAdd(b, v0, a20); a21 = TOps.MultiplyAdd(b, v1, a21);
            b = TOps.Broadcast(p3[j]);
            a30 = TOps.MultiplyAdd(b, v0, a30); a31 = TOps.MultiplyAdd(b, v1, a31);
        }
        if (!ElementLoads<TOps, TVec>.LoadedFinite<TValue>(largest)) return false;
        TOps.Store(o0, a00); TOps.Store(o0 + c, a01);
        TOps.Store(o1, a10); TOps.Store(o1 + c, a11);
        TOps.Store(o2, a20); TOps.Store(o2 + c, a21);
        TOps.Store(o3, a30); TOps.Store(o3 + c, a31);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec L<TValue>(TValue* source) where TValue : unmanaged => ElementLoads<TOps, TVec>.Load(source);

    /// <summary>Eight output vectors of one row (eight FMA chains); every element keeps its one chain, as in <see cref="FourVectors"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool EightVectors<TValue>(float* p, int n, TValue* v, nint ldv, float* o, float rescale) where TValue : unmanaged
    {
        int c = TOps.Count;
        TVec largest = TOps.Zero;
        TVec s = TOps.Broadcast(rescale);
        TVec a0 = TOps.Multiply(TOps.Load(o), s), a1 = TOps.Multiply(TOps.Load(o + c), s);
        TVec a2 = TOps.Multiply(TOps.Load(o + 2 * c), s), a3 = TOps.Multiply(TOps.Load(o + 3 * c), s);
        TVec a4 = TOps.Multiply(TOps.Load(o + 4 * c), s), a5 = TOps.Multiply(TOps.Load(o + 5 * c), s);
        TVec a6 = TOps.Multiply(TOps.Load(o + 6 * c), s), a7 = TOps.Multiply(TOps.Load(o + 7 * c), s);
        for (int j = 0; j < n; j++)
        {
            TValue* vj = v + j * ldv;
            TVec b = TOps.Broadcast(p[j]);
            TVec v0 = L(vj), v1 = L(vj + c), v2 = L(vj + 2 * c), v3 = L(vj + 3 * c);
            ElementLoads<TOps, TVec>.Track<TValue>(ref largest, v0, v1, v2, v3);
            a0 = TOps.MultiplyAdd(b, v0, a0);
            a1 = TOps.MultiplyAdd(b, v1, a1);
            a2 = TOps.MultiplyAdd(b, v2, a2);
            a3 = TOps.MultiplyAdd(b, v3, a3);
            v0 = L(vj + 4 * c); v1 = L(vj + 5 * c); v2 = L(vj + 6 * c); v3 = L(vj + 7 * c);
            ElementLoads<TOps, TVec>.Track<TValue>(ref largest, v0, v1, v2, v3);
            a4 = TOps.MultiplyAdd(b, v0, a4);
            a5 = TOps.MultiplyAdd(b, v1, a5);
            a6 = TOps.MultiplyAdd(b, v2, a6);
            a7 = TOps.MultiplyAdd(b, v3, a7);
        }
        if (!ElementLoads<TOps, TVec>.LoadedFinite<TValue>(largest)) return false;
        TOps.Store(o, a0); TOps.Store(o + c, a1); TOps.Store(o + 2 * c, a2); TOps.Store(o + 3 * c, a3);
        TOps.Store(o + 4 * c, a4); TOps.Store(o + 5 * c, a5); TOps.Store(o + 6 * c, a6); TOps.Store(o + 7 * c, a7);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool FourVectors<TValue>(float* p, int n, TValue* v, nint ldv, float* o, float rescale) where TValue : unmanaged
    {
        int c = TOps.Count;
        TVec largest = TOps.Zero;
        TVec s = TOps.Broadcast(rescale);
        TVec a0 = TOps.Multiply(TOps.Load(o), s), a1 = TOps.Multiply(TOps.Load(o + c), s);
        TVec a2 = TOps.Multiply(TOps.Load(o + 2 * c), s), a3 = TOps.Multiply(TOps.Load(o + 3 * c), s);
        for (int j = 0; j < n; j++)
        {
            TValue* vj = v + j * ldv;
            TVec b = TOps.Broadcast(p[j]);
            TVec v0 = L(vj), v1 = L(vj + c), v2 = L(vj + 2 * c), v3 = L(vj + 3 * c);
            ElementLoads<TOps, TVec>.Track<TValue>(ref largest, v0, v1, v2, v3);
            a0 = TOps.MultiplyAdd(b, v0, a0);
            a1 = TOps.MultiplyAdd(b, v1, a1);
            a2 = TOps.MultiplyAdd(b, v2, a2);
            a3 = TOps.MultiplyAdd(b, v3, a3);
        }
        if (!ElementLoads<TOps, TVec>.LoadedFinite<TValue>(largest)) return false;
        TOps.Store(o, a0); TOps.Store(o + c, a1); TOps.Store(o + 2 * c, a2); TOps.Store(o + 3 * c, a3);
        return true;
    }

    private static void OneVector<TValue>(float* p, int n, TValue* v, nint ldv, float* o, float rescale) where TValue : unmanaged
    {
        TVec a = TOps.Multiply(TOps.Load(o), TOps.Broadcast(rescale)), largest = TOps.Zero;
        for (int j = 0; j < n; j++)
        {
            TVec vj = L(v + j * ldv);
            ElementLoads<TOps, TVec>.Track<TValue>(ref largest, vj);
            a = TOps.MultiplyAdd(TOps.Broadcast(p[j]), vj, a);
        }
        if (ElementLoads<TOps, TVec>.LoadedFinite<TValue>(largest)) TOps.Store(o, a);
        else OneVector(p, n, (ScaledHalf*)v, ldv, o, rescale);
    }
}
