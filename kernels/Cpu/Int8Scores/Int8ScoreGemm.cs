using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu.Int8Scores;

/// <summary>
/// The score GEMM of <see cref="ScoreGemm{TOps, TVec}"/> in integers: Sᵀ[j][r] = Σ_x K8[j][x] · Q8ᵀ[x][r] over pairs of
/// int8 values held as int16 (one vpmaddwd multiplies and pairs 2 × Count products, against Count per FMA: twice the
/// multiply rate), then rebuilt as f_r · s_j · acc + shift_r as it leaves the registers (f_r = the row's quantisation
/// scale times the softmax scale, s_j the key's scale, shift_r = scale · q_r · mean). Sums are exact: |acc| ≤ D · 127².
/// </summary>
internal static unsafe class Int8ScoreGemm<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>Scores of keys [0, keyCount) (int16 rows <paramref name="ldk"/> lanes apart) against the tile's query pairs.</summary>
    public static void Compute(short* keys, nint ldk, int keyCount, float* keyScales, int* queryPairs, int br, int pairs,
        float* rowFactor, float* rowShift, float* scores)
    {
        var rows = new Rebuild(rowFactor, rowShift);
        int j = 0;
        if (br == 4 * TOps.Count)
            for (; j + 4 <= keyCount; j += 4) FourKeysFourVectors((int*)(keys + j * ldk), ldk / 2, keyScales + j, queryPairs, br, pairs, scores + j * br, rows);
        else
            for (; j + 3 <= keyCount; j += 3) ThreeKeys((int*)(keys + j * ldk), ldk / 2, keyScales + j, queryPairs, br, pairs, scores + j * br, rows);
        for (; j < keyCount; j++)
            for (int v = 0; v < br; v += TOps.Count) OneKeyOneVector((int*)(keys + j * ldk), keyScales[j], queryPairs + v, br, pairs, scores + j * br + v, rows, v);
    }

    /// <summary>The rows' factors and shifts: an integer sum becomes a score.</summary>
    private readonly struct Rebuild(float* factor, float* shift)
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVec Apply(TVec accumulator, float keyScale, int v) =>
            TOps.MultiplyAdd(TOps.ConvertInt32ToSingle(accumulator), TOps.Multiply(TOps.Load(factor + v), TOps.Broadcast(keyScale)), TOps.Load(shift + v));
    }

    // 4 keys x 4 query vectors (AVX-512): 16 accumulators, 4 loads and 4 broadcasts per 16 vpmaddwd.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourKeysFourVectors(int* k, nint ldk, float* ks, int* qt, int br, int pairs, float* s, Rebuild e)
    {
        int c = TOps.Count;
        TVec a00 = TOps.Zero, a01 = TOps.Zero, a02 = TOps.Zero, a03 = TOps.Zero;
        TVec a10 = TOps.Zero, a11 = TOps.Zero, a12 = TOps.Zero, a13 = TOps.Zero;
        TVec a20 = TOps.Zero, a21 = TOps.Zero, a22 = TOps.Zero, a23 = TOps.Zero;
        TVec a30 = TOps.Zero, a31 = TOps.Zero, a32 = TOps.Zero, a33 = TOps.Zero;
        int* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk, k3 = k + 3 * ldk;
        for (int x = 0; x < pairs; x++)
        {
            float* q = (float*)(qt + x * br);
            TVec q0 = TOps.Load(q), q1 = TOps.Load(q + c), q2 = TOps.Load(q + 2 * c), q3 = TOps.Load(q + 3 * c);
            int* b = k0 + x;
            a00 = TOps.MultiplyAddPairs(a00, q0, b); a01 = TOps.MultiplyAddPairs(a01, q1, b); a02 = TOps.MultiplyAddPairs(a02, q2, b); a03 = TOps.MultiplyAddPairs(a03, q3, b);
            b = k1 + x;
            a10 = TOps.MultiplyAddPairs(a10, q0, b); a11 = TOps.MultiplyAddPairs(a11, q1, b); a12 = TOps.MultiplyAddPairs(a12, q2, b); a13 = TOps.MultiplyAddPairs(a13, q3, b);
            b = k2 + x;
            a20 = TOps.MultiplyAddPairs(a20, q0, b); a21 = TOps.MultiplyAddPairs(a21, q1, b); a22 = TOps.MultiplyAddPairs(a22, q2, b); a23 = TOps.MultiplyAddPairs(a23, q3, b);
            b = k3 + x;
            a30 = TOps.MultiplyAddPairs(a30, q0, b); a31 = TOps.MultiplyAddPairs(a31, q1, b); a32 = TOps.MultiplyAddPairs(a32, q2, b); a33 = TOps.MultiplyAddPairs(a33, q3, b);
        }
        TOps.Store(s, e.Apply(a00, ks[0], 0)); TOps.Store(s + c, e.Apply(a01, ks[0], c)); TOps.Store(s + 2 * c, e.Apply(a02, ks[0], 2 * c)); TOps.Store(s + 3 * c, e.Apply(a03, ks[0], 3 * c));
        s += br;
        TOps.Store(s, e.Apply(a10, ks[1], 0)); TOps.Store(s + c, e.Apply(a11, ks[1], c)); TOps.Store(s + 2 * c, e.Apply(a12, ks[1], 2 * c)); TOps.Store(s + 3 * c, e.Apply(a13, ks[1], 3 * c));
        s += br;
        TOps.Store(s, e.Apply(a20, ks[2], 0)); TOps.Store(s + c, e.Apply(a21, ks[2], c)); TOps.Store(s + 2 * c, e.Apply(a22, ks[2], 2 * c)); TOps.Store(s + 3 * c, e.Apply(a23, ks[2], 3 * c));
        s += br;
        TOps.Store(s, e.Apply(a30, ks[3], 0)); TOps.Store(s + c, e.Apply(a31, ks[3], c)); TOps.Store(s + 2 * c, e.Apply(a32, ks[3], 2 * c)); TOps.Store(s + 3 * c, e.Apply(a33, ks[3], 3 * c));
    }

    // 3 keys x 3 query vectors (16 registers): 9 accumulators, 3 loads and 3 broadcasts per 9 vpmaddwd. Four keys would
    // need 12 accumulators, 3 query vectors, a broadcast and the product before its add: 17 registers, and the spill of
    // one accumulator puts a store-to-load round trip on every step of the loop.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ThreeKeys(int* k, nint ldk, float* ks, int* qt, int br, int pairs, float* s, Rebuild e)
    {
        int c = TOps.Count;
        TVec a00 = TOps.Zero, a01 = TOps.Zero, a02 = TOps.Zero;
        TVec a10 = TOps.Zero, a11 = TOps.Zero, a12 = TOps.Zero;
        TVec a20 = TOps.Zero, a21 = TOps.Zero, a22 = TOps.Zero;
        int* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk;
        float* q = (float*)qt;
        for (int x = 0; x < pairs; x++, q += br)
        {
            TVec q0 = TOps.Load(q), q1 = TOps.Load(q + c), q2 = TOps.Load(q + 2 * c);
            a00 = TOps.MultiplyAddPairs(a00, q0, k0 + x); a01 = TOps.MultiplyAddPairs(a01, q1, k0 + x); a02 = TOps.MultiplyAddPairs(a02, q2, k0 + x);
            a10 = TOps.MultiplyAddPairs(a10, q0, k1 + x); a11 = TOps.MultiplyAddPairs(a11, q1, k1 + x); a12 = TOps.MultiplyAddPairs(a12, q2, k1 + x);
            a20 = TOps.MultiplyAddPairs(a20, q0, k2 + x); a21 = TOps.MultiplyAddPairs(a21, q1, k2 + x); a22 = TOps.MultiplyAddPairs(a22, q2, k2 + x);
        }
        TOps.Store(s, e.Apply(a00, ks[0], 0)); TOps.Store(s + c, e.Apply(a01, ks[0], c)); TOps.Store(s + 2 * c, e.Apply(a02, ks[0], 2 * c));
        s += br;
        TOps.Store(s, e.Apply(a10, ks[1], 0)); TOps.Store(s + c, e.Apply(a11, ks[1], c)); TOps.Store(s + 2 * c, e.Apply(a12, ks[1], 2 * c));
        s += br;
        TOps.Store(s, e.Apply(a20, ks[2], 0)); TOps.Store(s + c, e.Apply(a21, ks[2], c)); TOps.Store(s + 2 * c, e.Apply(a22, ks[2], 2 * c));
    }

    private static void OneKeyOneVector(int* k, float keyScale, int* qt, int br, int pairs, float* s, Rebuild e, int v)
    {
        TVec a = TOps.Zero;
        for (int x = 0; x < pairs; x++) a = TOps.MultiplyAddPairs(a, TOps.Load((float*)(qt + x * br)), k + x);
        TOps.Store(s, e.Apply(a, keyScale, v));
    }
}
