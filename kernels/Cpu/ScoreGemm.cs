using System.Diagnostics;
using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// First GEMM of the tile, transposed: Sᵀ[j][r] = Σ_d K[j][d] · Qᵀ[d][r]. Keys are broadcast one scalar at a time and
/// queries streamed as vectors, so K is read in its natural row-major layout (no transpose pack) and the scores come
/// out with query rows along the vector lanes, where the softmax wants them. Attention scores are multiplied by the
/// scale and saturated to the float range as they leave the registers (one rounding for the scale, as the textbook
/// formula has it, and no separate pass over the block); the backward's dP = dO·Vᵀ is stored as accumulated.
/// </summary>
internal static unsafe class ScoreGemm<TOps, TVec> where TOps : struct, IVectorOps<TVec> where TVec : struct
{
    /// <summary>Products of keys [0, keyCount) (rows ldk apart) with the 3- or 4-vector query tile, as accumulated.</summary>
    public static void Compute(float* keys, nint ldk, int keyCount, float* queryT, int br, int headDim, float* scores) =>
        Compute(keys, ldk, keyCount, queryT, br, br, headDim, scores, new Epilogue(false, default));

    /// <summary>Attention scores: the products times <paramref name="scale"/>, saturated to [−MaxValue, MaxValue] (<see cref="ScoreSaturation"/>).</summary>
    /// <param name="rows">0 for all <paramref name="br"/> rows; else the first whole vectors of them (a tail tile's rows rounded up to a vector).</param>
    /// <param name="firstVectors">
    /// null, or per group of 4 keys the first vector of rows computed: a causal band's diagonal block hides those keys from
    /// the rows before it, and the band's mask writes −infinity over what is left out.
    /// </param>
    public static void ComputeScaled(float* keys, nint ldk, int keyCount, float* queryT, int br, int headDim, float* scores, float scale, int rows = 0,
        int* firstVectors = null) =>
        Compute(keys, ldk, keyCount, queryT, br, rows == 0 ? br : rows, headDim, scores, new Epilogue(true, TOps.Broadcast(scale)), firstVectors);

    /// <summary>What happens to an accumulator on its way to memory.</summary>
    private readonly struct Epilogue(bool scaled, TVec scale)
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVec Apply(TVec accumulator) => scaled ? TOps.Saturate(TOps.Multiply(accumulator, scale)) : accumulator;
    }

    /// <param name="br">the tile's rows: the pitch of Qᵀ and of the scores</param>
    /// <param name="rows">rows computed, 1 to 4 vectors (4 only as the whole tile): the rest are left as they were</param>
    private static void Compute(float* keys, nint ldk, int keyCount, float* queryT, int br, int rows, int headDim, float* scores, Epilogue epilogue,
        int* firstVectors = null)
    {
        Debug.Assert(rows % TOps.Count == 0 && rows >= TOps.Count && rows <= br && (rows < 4 * TOps.Count || br == rows));
        int c = TOps.Count, vectors = rows / c, j = 0;
        for (; j + 4 <= keyCount; j += 4)
        {
            int first = firstVectors == null ? 0 : firstVectors[j >> 2];
            float* k = keys + j * ldk, qt = queryT + first * c, s = scores + j * br + first * c;
            // A tail tile of one or two vectors of rows takes the narrow kernels (B25 H8 N333: 13 rows, which three vectors
            // computed as 48), as do the rows a band leaves after the first vector it hides.
            switch (vectors - first)
            {
                case 4: FourKeysFourVectors(k, ldk, qt, br, headDim, s, epilogue); break;
                case 3: FourKeys(k, ldk, qt, br, headDim, s, epilogue); break;
                case 2: FourKeysTwoVectors(k, ldk, qt, br, headDim, s, epilogue); break;
                case 1: FourKeysOneVector(k, ldk, qt, br, headDim, s, epilogue); break;
            }
        }
        for (; j < keyCount; j++)
            for (int v = 0; v < rows; v += c) OneKeyOneVector(keys + j * ldk, queryT + v, br, headDim, scores + j * br + v, epilogue);
    }

    // 4 keys x 4 query vectors (AVX-512): 16 independent accumulators, 4 loads and 4 broadcasts per 16 FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourKeysFourVectors(float* k, nint ldk, float* qt, int br, int d, float* s, Epilogue e)
    {
        int c = TOps.Count;
        TVec a00 = TOps.Zero, a01 = TOps.Zero, a02 = TOps.Zero, a03 = TOps.Zero;
        TVec a10 = TOps.Zero, a11 = TOps.Zero, a12 = TOps.Zero, a13 = TOps.Zero;
        TVec a20 = TOps.Zero, a21 = TOps.Zero, a22 = TOps.Zero, a23 = TOps.Zero;
        TVec a30 = TOps.Zero, a31 = TOps.Zero, a32 = TOps.Zero, a33 = TOps.Zero;
        float* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk, k3 = k + 3 * ldk;
        for (int x = 0; x < d; x++)
        {
            float* q = qt + x * br;
            TVec q0 = TOps.Load(q), q1 = TOps.Load(q + c), q2 = TOps.Load(q + 2 * c), q3 = TOps.Load(q + 3 * c);
            TVec b = TOps.Broadcast(k0[x]);
            a00 = TOps.MultiplyAdd(b, q0, a00); a01 = TOps.MultiplyAdd(b, q1, a01); a02 = TOps.MultiplyAdd(b, q2, a02); a03 = TOps.MultiplyAdd(b, q3, a03);
            b = TOps.Broadcast(k1[x]);
            a10 = TOps.MultiplyAdd(b, q0, a10); a11 = TOps.MultiplyAdd(b, q1, a11); a12 = TOps.MultiplyAdd(b, q2, a12); a13 = TOps.MultiplyAdd(b, q3, a13);
            b = TOps.Broadcast(k2[x]);
            a20 = TOps.MultiplyAdd(b, q0, a20); a21 = TOps.MultiplyAdd(b, q1, a21); a22 = TOps.MultiplyAdd(b, q2, a22); a23 = TOps.MultiplyAdd(b, q3, a23);
            b = TOps.Broadcast(k3[x]);
            a30 = TOps.MultiplyAdd(b, q0, a30); a31 = TOps.MultiplyAdd(b, q1, a31); a32 = TOps.MultiplyAdd(b, q2, a32); a33 = TOps.MultiplyAdd(b, q3, a33);
        }
        TOps.Store(s, e.Apply(a00)); TOps.Store(s + c, e.Apply(a01)); TOps.Store(s + 2 * c, e.Apply(a02)); TOps.Store(s + 3 * c, e.Apply(a03));
        s += br;
        TOps.Store(s, e.Apply(a10)); TOps.Store(s + c, e.Apply(a11)); TOps.Store(s + 2 * c, e.Apply(a12)); TOps.Store(s + 3 * c, e.Apply(a13));
        s += br;
        TOps.Store(s, e.Apply(a20)); TOps.Store(s + c, e.Apply(a21)); TOps.Store(s + 2 * c, e.Apply(a22)); TOps.Store(s + 3 * c, e.Apply(a23));
        s += br;
        TOps.Store(s, e.Apply(a30)); TOps.Store(s + c, e.Apply(a31)); TOps.Store(s + 2 * c, e.Apply(a32)); TOps.Store(s + 3 * c, e.Apply(a33));
    }

    // 4 keys x 3 query vectors: 12 independent accumulators (Zen 4 needs >= 8 to keep both FMA pipes busy),
    // 3 vector loads and 4 broadcasts per 12 FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourKeys(float* k, nint ldk, float* qt, int br, int d, float* s, Epilogue e)
    {
        int c = TOps.Count;
        TVec a00 = TOps.Zero, a01 = TOps.Zero, a02 = TOps.Zero;
        TVec a10 = TOps.Zero, a11 = TOps.Zero, a12 = TOps.Zero;
        TVec a20 = TOps.Zero, a21 = TOps.Zero, a22 = TOps.Zero;
        TVec a30 = TOps.Zero, a31 = TOps.Zero, a32 = TOps.Zero;
        float* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk, k3 = k + 3 * ldk;
        for (int x = 0; x < d; x++)
        {
            float* q = qt + x * br;
            TVec q0 = TOps.Load(q), q1 = TOps.Load(q + c), q2 = TOps.Load(q + 2 * c);
            TVec b = TOps.Broadcast(k0[x]);
            a00 = TOps.MultiplyAdd(b, q0, a00); a01 = TOps.MultiplyAdd(b, q1, a01); a02 = TOps.MultiplyAdd(b, q2, a02);
            b = TOps.Broadcast(k1[x]);
            a10 = TOps.MultiplyAdd(b, q0, a10); a11 = TOps.MultiplyAdd(b, q1, a11); a12 = TOps.MultiplyAdd(b, q2, a12);
            b = TOps.Broadcast(k2[x]);
            a20 = TOps.MultiplyAdd(b, q0, a20); a21 = TOps.MultiplyAdd(b, q1, a21); a22 = TOps.MultiplyAdd(b, q2, a22);
            b = TOps.Broadcast(k3[x]);
            a30 = TOps.MultiplyAdd(b, q0, a30); a31 = TOps.MultiplyAdd(b, q1, a31); a32 = TOps.MultiplyAdd(b, q2, a32);
        }
        TOps.Store(s, e.Apply(a00)); TOps.Store(s + c, e.Apply(a01)); TOps.Store(s + 2 * c, e.Apply(a02));
        s += br;
        TOps.Store(s, e.Apply(a10)); TOps.Store(s + c, e.Apply(a11)); TOps.Store(s + 2 * c, e.Apply(a12));
        s += br;
        TOps.Store(s, e.Apply(a20)); TOps.Store(s + c, e.Apply(a21)); TOps.Store(s + 2 * c, e.Apply(a22));
        s += br;
        TOps.Store(s, e.Apply(a30)); TOps.Store(s + c, e.Apply(a31)); TOps.Store(s + 2 * c, e.Apply(a32));
    }

    // 4 keys x 2 query vectors: 8 independent accumulators, 2 loads and 4 broadcasts per 8 FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourKeysTwoVectors(float* k, nint ldk, float* qt, int br, int d, float* s, Epilogue e)
    {
        int c = TOps.Count;
        TVec a00 = TOps.Zero, a01 = TOps.Zero, a10 = TOps.Zero, a11 = TOps.Zero;
        TVec a20 = TOps.Zero, a21 = TOps.Zero, a30 = TOps.Zero, a31 = TOps.Zero;
        float* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk, k3 = k + 3 * ldk;
        for (int x = 0; x < d; x++)
        {
            float* q = qt + x * br;
            TVec q0 = TOps.Load(q), q1 = TOps.Load(q + c);
            TVec b = TOps.Broadcast(k0[x]);
            a00 = TOps.MultiplyAdd(b, q0, a00); a01 = TOps.MultiplyAdd(b, q1, a01);
            b = TOps.Broadcast(k1[x]);
            a10 = TOps.MultiplyAdd(b, q0, a10); a11 = TOps.MultiplyAdd(b, q1, a11);
            b = TOps.Broadcast(k2[x]);
            a20 = TOps.MultiplyAdd(b, q0, a20); a21 = TOps.MultiplyAdd(b, q1, a21);
            b = TOps.Broadcast(k3[x]);
            a30 = TOps.MultiplyAdd(b, q0, a30); a31 = TOps.MultiplyAdd(b, q1, a31);
        }
        TOps.Store(s, e.Apply(a00)); TOps.Store(s + c, e.Apply(a01));
        s += br;
        TOps.Store(s, e.Apply(a10)); TOps.Store(s + c, e.Apply(a11));
        s += br;
        TOps.Store(s, e.Apply(a20)); TOps.Store(s + c, e.Apply(a21));
        s += br;
        TOps.Store(s, e.Apply(a30)); TOps.Store(s + c, e.Apply(a31));
    }

    // 4 keys x 1 query vector: 4 independent chains, 1 load and 4 broadcasts per 4 FMAs (a tail of at most one vector of rows).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FourKeysOneVector(float* k, nint ldk, float* qt, int br, int d, float* s, Epilogue e)
    {
        TVec a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero;
        float* k0 = k, k1 = k + ldk, k2 = k + 2 * ldk, k3 = k + 3 * ldk;
        for (int x = 0; x < d; x++)
        {
            TVec q = TOps.Load(qt + x * br);
            a0 = TOps.MultiplyAdd(TOps.Broadcast(k0[x]), q, a0);
            a1 = TOps.MultiplyAdd(TOps.Broadcast(k1[x]), q, a1);
            a2 = TOps.MultiplyAdd(TOps.Broadcast(k2[x]), q, a2);
            a3 = TOps.MultiplyAdd(TOps.Broadcast(k3[x]), q, a3);
        }
        TOps.Store(s, e.Apply(a0));
        TOps.Store(s + br, e.Apply(a1));
        TOps.Store(s + 2 * br, e.Apply(a2));
        TOps.Store(s + 3 * br, e.Apply(a3));
    }

    private static void OneKeyOneVector(float* k, float* qt, int br, int d, float* s, Epilogue e)
    {
        TVec a = TOps.Zero;
        for (int x = 0; x < d; x++) a = TOps.MultiplyAdd(TOps.Broadcast(k[x]), TOps.Load(qt + x * br), a);
        TOps.Store(s, e.Apply(a));
    }
}
