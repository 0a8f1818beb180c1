using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// Scores of a few query rows against a key block, keys along the output: S[r][j] = q_r · k_j. Each dot product runs
/// along the head dimension in whole vectors (rows padded with zeros), then one horizontal sum; four keys at a time
/// give four independent accumulator chains. With one query row there is no register tile to fill: this is a GEMV,
/// bound by how fast K streams in.
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
            for (; j + 4 <= keyCount; j += 4) FourKeys(q, paddedDim, keys + j * ldk, ldk, s + j);
            for (; j < keyCount; j++) s[j] = Dot(q, paddedDim, keys + j * ldk);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourKeys<TKey>(float* q, int d, TKey* k, nint ldk, float* s) where TKey : unmanaged
    {
        int c = TOps.Count;
        TVec a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero;
        TKey* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk, k3 = k + 3 * ldk;
        for (int x = 0; x < d; x += c)
        {
            TVec qx = TOps.Load(q + x);
            a0 = TOps.MultiplyAdd(qx, ElementLoads<TOps, TVec>.Load(k0 + x), a0);
            a1 = TOps.MultiplyAdd(qx, ElementLoads<TOps, TVec>.Load(k1 + x), a1);
            a2 = TOps.MultiplyAdd(qx, ElementLoads<TOps, TVec>.Load(k2 + x), a2);
            a3 = TOps.MultiplyAdd(qx, ElementLoads<TOps, TVec>.Load(k3 + x), a3);
        }
        s[0] = TOps.Sum(a0);
        s[1] = TOps.Sum(a1);
        s[2] = TOps.Sum(a2);
        s[3] = TOps.Sum(a3);
    }

    private static float Dot<TKey>(float* q, int d, TKey* k) where TKey : unmanaged
    {
        TVec a = TOps.Zero;
        for (int x = 0; x < d; x += TOps.Count) a = TOps.MultiplyAdd(TOps.Load(q + x), ElementLoads<TOps, TVec>.Load(k + x), a);
        return TOps.Sum(a);
    }
}
