using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Second GEMM of the tile: O[r][:] = O[r][:] · rescale[r] + Σ_j P[j][r] · V[j][:]. Probabilities are broadcast, values
/// streamed as row vectors in their natural layout; the online-softmax rescale is folded into loading the accumulators.
/// </summary>
internal static unsafe class ValueGemm<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <param name="probabilities">Pᵀ [keyCount][br]</param>
    /// <param name="values">V rows, ldv apart, at least dvVectors · Count readable floats each</param>
    /// <param name="output">O [br][ldo]</param>
    /// <param name="rows">0 for all <paramref name="br"/> rows (the pitch of Pᵀ); else the first rows only, a multiple of 4.</param>
    /// <param name="rescale">per row, the factor O is multiplied by first; null to start from zero without reading O</param>
    /// <param name="groupKeys">
    /// null, or per group of 4 rows the keys [0, n) it takes: a causal band's diagonal block leaves the later keys of
    /// early rows at probability 0, and skipping them leaves every bit as it was (the accumulators start at +0 and are
    /// never −0, so adding a ±0 product changes nothing).
    /// </param>
    public static void Accumulate(float* probabilities, int br, int keyCount, float* values, nint ldv, int dvVectors,
        float* output, int ldo, float* rescale, int rows = 0, int* groupKeys = null) =>
        Accumulate(probabilities, ScoreLayout.Transposed(br), rows == 0 ? br : rows, keyCount, values, ldv, dvVectors, output, ldo, rescale, groupKeys);

    /// <summary>
    /// The same with the weights anywhere: weight (output row r, key j) at r·RowStride + j·KeyStride. The backward
    /// pass uses it for dV = Pᵀ·dO and dK = dSᵀ·Q straight from the [key][row] blocks, with no transpose.
    /// </summary>
    /// <param name="rows">output rows, a multiple of 4</param>
    public static void Accumulate(float* probabilities, ScoreLayout layout, int rows, int keyCount, float* values, nint ldv, int dvVectors,
        float* output, int ldo, float* rescale, int* groupKeys = null)
    {
        int c = TOps.Count, allKeys = keyCount;
        for (int r = 0; r < rows; r += 4)
        {
            keyCount = groupKeys == null ? allKeys : groupKeys[r >> 2];
            float* p = probabilities + (nint)r * layout.RowStride, rows0 = rescale == null ? null : rescale + r;
            int cv = 0;
            // With AVX-512's 32 registers, groups of four vectors (16 accumulators, 4 loads and 4 broadcasts per 16 FMAs,
            // the score kernel's shape): as groups of two, D = 64 ran at about 0.75x the score GEMM's rate. A remainder
            // of one is avoided (5 = 3 + 2). Every element keeps its one FMA chain in key order, so the grouping never
            // changes a bit.
            int fours = TOps.Count == 16 ? (dvVectors % 4 == 1 && dvVectors >= 4 ? dvVectors / 4 - 1 : dvVectors / 4) : 0;
            for (int g = 0; g < fours; g++, cv += 4)
                FourRowsFourVectors(p, layout.RowStride, layout.KeyStride, keyCount, values + cv * c, ldv, output + r * ldo + cv * c, ldo, rows0);
            // Then groups of three vectors (12 accumulators), and the rest in groups of two (8): a remainder of one vector
            // would leave 4 FMA chains for 2 pipes at 4 cycles' latency, half speed. So 4 = 2 + 2, 7 = 3 + 2 + 2,
            // 8 = 3 + 3 + 2, 16 = 4 · 3 + 2 + 2; only a single vector runs alone.
            int left = dvVectors - cv;
            int threes = left % 3 == 1 && left >= 4 ? left / 3 - 1 : left / 3;
            for (int g = 0; g < threes; g++, cv += 3)
                FourRowsThreeVectors(p, layout.RowStride, layout.KeyStride, keyCount, values + cv * c, ldv, output + r * ldo + cv * c, ldo, rows0);
            for (; cv + 2 <= dvVectors; cv += 2)
                FourRowsTwoVectors(p, layout.RowStride, layout.KeyStride, keyCount, values + cv * c, ldv, output + r * ldo + cv * c, ldo, rows0);
            for (; cv < dvVectors; cv++)
                FourRowsOneVector(p, layout.RowStride, layout.KeyStride, keyCount, values + cv * c, ldv, output + r * ldo + cv * c, ldo, rows0);
        }
    }

    // 4 rows x 4 value vectors (AVX-512): 16 independent accumulators, 4 loads and 4 broadcasts per 16 FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourRowsFourVectors(float* p, nint rowStride, nint keyStride, int n, float* v, nint ldv, float* o, int ldo, float* rescale)
    {
        int c = TOps.Count;
        TVec s0 = Factor(rescale, 0), s1 = Factor(rescale, 1), s2 = Factor(rescale, 2), s3 = Factor(rescale, 3);
        float* o0 = o, o1 = o + ldo, o2 = o + 2 * ldo, o3 = o + 3 * ldo;
        TVec a00 = Start(o0, s0, rescale), a01 = Start(o0 + c, s0, rescale), a02 = Start(o0 + 2 * c, s0, rescale), a03 = Start(o0 + 3 * c, s0, rescale);
        TVec a10 = Start(o1, s1, rescale), a11 = Start(o1 + c, s1, rescale), a12 = Start(o1 + 2 * c, s1, rescale), a13 = Start(o1 + 3 * c, s1, rescale);
        TVec a20 = Start(o2, s2, rescale), a21 = Start(o2 + c, s2, rescale), a22 = Start(o2 + 2 * c, s2, rescale), a23 = Start(o2 + 3 * c, s2, rescale);
        TVec a30 = Start(o3, s3, rescale), a31 = Start(o3 + c, s3, rescale), a32 = Start(o3 + 2 * c, s3, rescale), a33 = Start(o3 + 3 * c, s3, rescale);
        float* p0 = p, p1 = p + rowStride, p2 = p + 2 * rowStride, p3 = p + 3 * rowStride;
        for (int j = 0; j < n; j++)
        {
            float* vj = v + j * ldv;
            nint pj = j * keyStride;
            TVec v0 = TOps.Load(vj), v1 = TOps.Load(vj + c), v2 = TOps.Load(vj + 2 * c), v3 = TOps.Load(vj + 3 * c);
            TVec b = TOps.Broadcast(p0[pj]);
            a00 = TOps.MultiplyAdd(b, v0, a00); a01 = TOps.MultiplyAdd(b, v1, a01); a02 = TOps.MultiplyAdd(b, v2, a02); a03 = TOps.MultiplyAdd(b, v3, a03);
            b = TOps.Broadcast(p1[pj]);
            a10 = TOps.MultiplyAdd(b, v0, a10); a11 = TOps.MultiplyAdd(b, v1, a11); a12 = TOps.MultiplyAdd(b, v2, a12); a13 = TOps.MultiplyAdd(b, v3, a13);
            b = TOps.Broadcast(p2[pj]);
            a20 = TOps.MultiplyAdd(b, v0, a20); a21 = TOps.MultiplyAdd(b, v1, a21); a22 = TOps.MultiplyAdd(b, v2, a22); a23 = TOps.MultiplyAdd(b, v3, a23);
            b = TOps.Broadcast(p3[pj]);
            a30 = TOps.MultiplyAdd(b, v0, a30); a31 = TOps.MultiplyAdd(b, v1, a31); a32 = TOps.MultiplyAdd(b, v2, a32); a33 = TOps.MultiplyAdd(b, v3, a33);
        }
        TOps.Store(o0, a00); TOps.Store(o0 + c, a01); TOps.Store(o0 + 2 * c, a02); TOps.Store(o0 + 3 * c, a03);
        TOps.Store(o1, a10); TOps.Store(o1 + c, a11); TOps.Store(o1 + 2 * c, a12); TOps.Store(o1 + 3 * c, a13);
        TOps.Store(o2, a20); TOps.Store(o2 + c, a21); TOps.Store(o2 + 2 * c, a22); TOps.Store(o2 + 3 * c, a23);
        TOps.Store(o3, a30); TOps.Store(o3 + c, a31); TOps.Store(o3 + 2 * c, a32); TOps.Store(o3 + 3 * c, a33);
    }

    // 4 rows x 3 value vectors: 12 independent accumulators, 3 loads and 4 broadcasts per 12 FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourRowsThreeVectors(float* p, nint rowStride, nint keyStride, int n, float* v, nint ldv, float* o, int ldo, float* rescale)
    {
        int c = TOps.Count;
        TVec s0 = Factor(rescale, 0), s1 = Factor(rescale, 1), s2 = Factor(rescale, 2), s3 = Factor(rescale, 3);
        float* o0 = o, o1 = o + ldo, o2 = o + 2 * ldo, o3 = o + 3 * ldo;
        TVec a00 = Start(o0, s0, rescale), a01 = Start(o0 + c, s0, rescale), a02 = Start(o0 + 2 * c, s0, rescale);
        TVec a10 = Start(o1, s1, rescale), a11 = Start(o1 + c, s1, rescale), a12 = Start(o1 + 2 * c, s1, rescale);
        TVec a20 = Start(o2, s2, rescale), a21 = Start(o2 + c, s2, rescale), a22 = Start(o2 + 2 * c, s2, rescale);
        TVec a30 = Start(o3, s3, rescale), a31 = Start(o3 + c, s3, rescale), a32 = Start(o3 + 2 * c, s3, rescale);
        float* p0 = p, p1 = p + rowStride, p2 = p + 2 * rowStride, p3 = p + 3 * rowStride;
        for (int j = 0; j < n; j++)
        {
            float* vj = v + j * ldv;
            nint pj = j * keyStride;
            TVec v0 = TOps.Load(vj), v1 = TOps.Load(vj + c), v2 = TOps.Load(vj + 2 * c);
            TVec b = TOps.Broadcast(p0[pj]);
            a00 = TOps.MultiplyAdd(b, v0, a00); a01 = TOps.MultiplyAdd(b, v1, a01); a02 = TOps.MultiplyAdd(b, v2, a02);
            b = TOps.Broadcast(p1[pj]);
            a10 = TOps.MultiplyAdd(b, v0, a10); a11 = TOps.MultiplyAdd(b, v1, a11); a12 = TOps.MultiplyAdd(b, v2, a12);
            b = TOps.Broadcast(p2[pj]);
            a20 = TOps.MultiplyAdd(b, v0, a20); a21 = TOps.MultiplyAdd(b, v1, a21); a22 = TOps.MultiplyAdd(b, v2, a22);
            b = TOps.Broadcast(p3[pj]);
            a30 = TOps.MultiplyAdd(b, v0, a30); a31 = TOps.MultiplyAdd(b, v1, a31); a32 = TOps.MultiplyAdd(b, v2, a32);
        }
        TOps.Store(o0, a00); TOps.Store(o0 + c, a01); TOps.Store(o0 + 2 * c, a02);
        TOps.Store(o1, a10); TOps.Store(o1 + c, a11); TOps.Store(o1 + 2 * c, a12);
        TOps.Store(o2, a20); TOps.Store(o2 + c, a21); TOps.Store(o2 + 2 * c, a22);
        TOps.Store(o3, a30); TOps.Store(o3 + c, a31); TOps.Store(o3 + 2 * c, a32);
    }

    // 4 rows x 2 value vectors: 8 independent accumulators, 2 loads and 4 broadcasts per 8 FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourRowsTwoVectors(float* p, nint rowStride, nint keyStride, int n, float* v, nint ldv, float* o, int ldo, float* rescale)
    {
        int c = TOps.Count;
        TVec s0 = Factor(rescale, 0), s1 = Factor(rescale, 1), s2 = Factor(rescale, 2), s3 = Factor(rescale, 3);
        float* o0 = o, o1 = o + ldo, o2 = o + 2 * ldo, o3 = o + 3 * ldo;
        TVec a00 = Start(o0, s0, rescale), a01 = Start(o0 + c, s0, rescale);
        TVec a10 = Start(o1, s1, rescale), a11 = Start(o1 + c, s1, rescale);
        TVec a20 = Start(o2, s2, rescale), a21 = Start(o2 + c, s2, rescale);
        TVec a30 = Start(o3, s3, rescale), a31 = Start(o3 + c, s3, rescale);
        float* p0 = p, p1 = p + rowStride, p2 = p + 2 * rowStride, p3 = p + 3 * rowStride;
        for (int j = 0; j < n; j++)
        {
            float* vj = v + j * ldv;
            nint pj = j * keyStride;
            TVec v0 = TOps.Load(vj), v1 = TOps.Load(vj + c);
            TVec b = TOps.Broadcast(p0[pj]);
            a00 = TOps.MultiplyAdd(b, v0, a00); a01 = TOps.MultiplyAdd(b, v1, a01);
            b = TOps.Broadcast(p1[pj]);
            a10 = TOps.MultiplyAdd(b, v0, a10); a11 = TOps.MultiplyAdd(b, v1, a11);
            b = TOps.Broadcast(p2[pj]);
            a20 = TOps.MultiplyAdd(b, v0, a20); a21 = TOps.MultiplyAdd(b, v1, a21);
            b = TOps.Broadcast(p3[pj]);
            a30 = TOps.MultiplyAdd(b, v0, a30); a31 = TOps.MultiplyAdd(b, v1, a31);
        }
        TOps.Store(o0, a00); TOps.Store(o0 + c, a01);
        TOps.Store(o1, a10); TOps.Store(o1 + c, a11);
        TOps.Store(o2, a20); TOps.Store(o2 + c, a21);
        TOps.Store(o3, a30); TOps.Store(o3 + c, a31);
    }

    private static void FourRowsOneVector(float* p, nint rowStride, nint keyStride, int n, float* v, nint ldv, float* o, int ldo, float* rescale)
    {
        float* o0 = o, o1 = o + ldo, o2 = o + 2 * ldo, o3 = o + 3 * ldo;
        TVec a0 = Start(o0, Factor(rescale, 0), rescale);
        TVec a1 = Start(o1, Factor(rescale, 1), rescale);
        TVec a2 = Start(o2, Factor(rescale, 2), rescale);
        TVec a3 = Start(o3, Factor(rescale, 3), rescale);
        float* p0 = p, p1 = p + rowStride, p2 = p + 2 * rowStride, p3 = p + 3 * rowStride;
        for (int j = 0; j < n; j++)
        {
            TVec vj = TOps.Load(v + j * ldv);
            nint pj = j * keyStride;
            a0 = TOps.MultiplyAdd(TOps.Broadcast(p0[pj]), vj, a0);
            a1 = TOps.MultiplyAdd(TOps.Broadcast(p1[pj]), vj, a1);
            a2 = TOps.MultiplyAdd(TOps.Broadcast(p2[pj]), vj, a2);
            a3 = TOps.MultiplyAdd(TOps.Broadcast(p3[pj]), vj, a3);
        }
        TOps.Store(o0, a0); TOps.Store(o1, a1); TOps.Store(o2, a2); TOps.Store(o3, a3);
    }

    /// <summary>An accumulator's start: O · rescale, or zero without reading O when there is no rescale (O not yet written).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec Start(float* o, TVec factor, float* rescale) => rescale == null ? TOps.Zero : TOps.Multiply(TOps.Load(o), factor);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec Factor(float* rescale, int row) => rescale == null ? TOps.Zero : TOps.Broadcast(rescale[row]);
}
