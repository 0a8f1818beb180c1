using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// Scores of a few query rows against a key block, keys along the output: S[r][j] = q_r · k_j. Each dot product runs
/// along the head dimension in whole vectors (rows padded with zeros), then one horizontal sum; four keys at a time
/// give four independent accumulator chains. With one query row there is no register tile to fill: this is a GEMV,
/// bound by how fast K streams in. Keys read as <see cref="ScaledFiniteHalf"/> are checked as they load; a piece (four
/// keys of a row, two keys of four rows, one dot product) that met an infinity or NaN is computed again as <see
/// cref="ScaledHalf"/>, its scores overwritten.
/// </summary>
internal static unsafe class DecodeScores<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <param name="queries">[rowCount][paddedDim]</param>
    /// <param name="keys">keyCount rows, ldk apart, paddedDim readable elements each (float, BFloat16 or Half)</param>
    /// <param name="scores">[rowCount][lds]</param>
    public static void Compute<TKey>(float* queries, int rowCount, int paddedDim, TKey* keys, nint ldk, int keyCount, float* scores, int lds)
        where TKey : unmanaged
    {
        for (int r = 0; r < rowCount; r++)
        {
            float* q = queries + r * paddedDim;
            float* s = scores + r * lds;
            int j = 0;
            // With AVX-512's 32 registers, eight keys at a time: four keys are four FMA chains, half what two pipes at four
            // cycles' latency need. Each key keeps its one chain, so the grouping changes no bit.
            if (TOps.Count == 16)
                for (; j + 8 <= keyCount; j += 8)
                    if (!EightKeys(q, paddedDim, keys + j * ldk, ldk, s + j)) EightKeys(q, paddedDim, (ScaledHalf*)(keys + j * ldk), ldk, s + j);
            for (; j + 4 <= keyCount; j += 4)
                if (!FourKeys(q, paddedDim, keys + j * ldk, ldk, s + j)) FourKeys(q, paddedDim, (ScaledHalf*)(keys + j * ldk), ldk, s + j);
            for (; j < keyCount; j++) s[j] = Dot(q, paddedDim, keys + j * ldk);
        }
    }

    /// <summary>
    /// As <see cref="Compute{TKey}"/>, four rows at a time (a GQA group's rows share every key): each key vector is
    /// loaded and converted once for the four rows, which matters where a conversion costs more than the FMA (int8).
    /// </summary>
    public static void ComputeSharedKeys<TKey>(float* queries, int rowCount, int paddedDim, TKey* keys, nint ldk, int keyCount, float* scores, int lds)
        where TKey : unmanaged
    {
        int r = 0;
        for (; r + 4 <= rowCount; r += 4)
        {
            float* q = queries + r * paddedDim;
            float* s = scores + r * lds;
            int j = 0;
            for (; j + 2 <= keyCount; j += 2)
                if (!TwoKeysFourRows(q, paddedDim, keys + j * ldk, ldk, s + j, lds)) TwoKeysFourRows(q, paddedDim, (ScaledHalf*)(keys + j * ldk), ldk, s + j, lds);
            for (; j < keyCount; j++)
                for (int row = 0; row < 4; row++) s[row * lds + j] = Dot(q + row * paddedDim, paddedDim, keys + j * ldk);
        }
        if (r < rowCount) Compute(queries + r * paddedDim, rowCount - r, paddedDim, keys, ldk, keyCount, scores + r * lds, lds);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TwoKeysFourRows<TKey>(float* q, int d, TKey* k, nint ldk, float* s, int lds) where TKey : unmanaged
    {
        int c = TOps.Count;
        TVec largest = TOps.Zero;
        TVec a00 = TOps.Zero, a01 = TOps.Zero, a10 = TOps.Zero, a11 = TOps.Zero;
        TVec a20 = TOps.Zero, a21 = TOps.Zero, a30 = TOps.Zero, a31 = TOps.Zero;
        TKey* k0 = k, k1 = k + ldk;
        float* q0 = q, q1 = q + d, q2 = q + 2 * d, q3 = q + 3 * d;
        for (int x = 0; x < d; x += c)
        {
            TVec kx0 = ElementLoads<TOps, TVec>.Load(k0 + x), kx1 = ElementLoads<TOps, TVec>.Load(k1 + x);
            ElementLoads<TOps, TVec>.Track<TKey>(ref largest, kx0, kx1);
            TVec qx = TOps.Load(q0 + x);
            a00 = TOps.MultiplyAdd(qx, kx0, a00); a01 = TOps.MultiplyAdd(qx, kx1, a01);
            qx = TOps.Load(q1 + x);
            a10 = TOps.MultiplyAdd(qx, kx0, a10); a11 = TOps.MultiplyAdd(qx, kx1, a11);
            qx = TOps.Load(q2 + x);
            a20 = TOps.MultiplyAdd(qx, kx0, a20); a21 = TOps.MultiplyAdd(qx, kx1, a21);
            qx = TOps.Load(q3 + x);
            a30 = TOps.MultiplyAdd(qx, kx0, a30); a31 = TOps.MultiplyAdd(qx, kx1, a31);
        }
        var first = TOps.SumFour(a00, a10, a20, a30);
        var second = TOps.SumFour(a01, a11, a21, a31);
        for (int row = 0; row < 4; row++)
        {
            s[row * lds] = first.GetElement(row);
            s[row * lds + 1] = second.GetElement(row);
        }
        return ElementLoads<TOps, TVec>.LoadedFinite<TKey>(largest);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool EightKeys<TKey>(float* q, int d, TKey* k, nint ldk, float* s) where TKey : unmanaged
    {
        int c = TOps.Count;
        TVec largest = TOps.Zero;
        TVec a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero, a4 = TOps.Zero, a5 = TOps.Zero, a6 = TOps.Zero, a7 = TOps.Zero;
        TKey* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk, k3 = k + 3 * ldk, k4 = k + 4 * ldk, k5 = k + 5 * ldk, k6 = k + 6 * ldk, k7 = k + 7 * ldk;
        for (int x = 0; x < d; x += c)
        {
            TVec qx = TOps.Load(q + x);
            TVec kx0 = ElementLoads<TOps, TVec>.Load(k0 + x), kx1 = ElementLoads<TOps, TVec>.Load(k1 + x);
            TVec kx2 = ElementLoads<TOps, TVec>.Load(k2 + x), kx3 = ElementLoads<TOps, TVec>.Load(k3 + x);
            ElementLoads<TOps, TVec>.Track<TKey>(ref largest, kx0, kx1, kx2, kx3);
            a0 = TOps.MultiplyAdd(qx, kx0, a0);
            a1 = TOps.MultiplyAdd(qx, kx1, a1);
            a2 = TOps.MultiplyAdd(qx, kx2, a2);
            a3 = TOps.MultiplyAdd(qx, kx3, a3);
            kx0 = ElementLoads<TOps, TVec>.Load(k4 + x); kx1 = ElementLoads<TOps, TVec>.Load(k5 + x);
            kx2 = ElementLoads<TOps, TVec>.Load(k6 + x); kx3 = ElementLoads<TOps, TVec>.Load(k7 + x);
            ElementLoads<TOps, TVec>.Track<TKey>(ref largest, kx0, kx1, kx2, kx3);
            a4 = TOps.MultiplyAdd(qx, kx0, a4);
            a5 = TOps.MultiplyAdd(qx, kx1, a5);
            a6 = TOps.MultiplyAdd(qx, kx2, a6);
            a7 = TOps.MultiplyAdd(qx, kx3, a7);
        }
        TOps.SumFour(a0, a1, a2, a3).Store(s);
        TOps.SumFour(a4, a5, a6, a7).Store(s + 4);
        return ElementLoads<TOps, TVec>.LoadedFinite<TKey>(largest);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool FourKeys<TKey>(float* q, int d, TKey* k, nint ldk, float* s) where TKey : unmanaged
    {
        int c = TOps.Count;
        TVec largest = TOps.Zero;
        TVec a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero;
        TKey* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk, k3 = k + 3 * ldk;
        for (int x = 0; x < d; x += c)
        {
            TVec qx = TOps.Load(q + x);
            TVec kx0 = ElementLoads<TOps, TVec>.Load(k0 + x), kx1 = ElementLoads<TOps, TVec>.Load(k1 + x);
            TVec kx2 = ElementLoads<TOps, TVec>.Load(k2 + x), kx3 = ElementLoads<TOps, TVec>.Load(k3 + x);
            ElementLoads<TOps, TVec>.Track<TKey>(ref largest, kx0, kx1, kx2, kx3);
            a0 = TOps.MultiplyAdd(qx, kx0, a0);
            a1 = TOps.MultiplyAdd(qx, kx1, a1);
            a2 = TOps.MultiplyAdd(qx, kx2, a2);
            a3 = TOps.MultiplyAdd(qx, kx3, a3);
        }
        TOps.SumFour(a0, a1, a2, a3).Store(s);
        return ElementLoads<TOps, TVec>.LoadedFinite<TKey>(largest);
    }

    private static float Dot<TKey>(float* q, int d, TKey* k) where TKey : unmanaged
    {
        TVec a = TOps.Zero, largest = TOps.Zero;
        for (int x = 0; x < d; x += TOps.Count)
        {
            TVec kx = ElementLoads<TOps, TVec>.Load(k + x);
            ElementLoads<TOps, TVec>.Track<TKey>(ref largest, kx);
            a = TOps.MultiplyAdd(TOps.Load(q + x), kx, a);
        }
        return ElementLoads<TOps, TVec>.LoadedFinite<TKey>(largest) ? TOps.Sum(a) : Dot(q, d, (ScaledHalf*)k);
    }
}
