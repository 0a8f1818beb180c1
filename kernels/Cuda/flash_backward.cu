// Flash-attention backward on tensor cores (sm_80+), FlashAttention-2's recomputation: P is rebuilt per tile from the
// scores and the forward's saved LSE, so nothing of size Lq x Lk is stored. Three kernels per variant:
//   flash_backward_delta_*  Delta_i = dO_i . O_i per row, in fp32 (O as the forward stored it).
//   flash_backward_kv_*     dK and dV: a block owns 64 keys of one KV head (a warp 16 of them) and walks the query
//                           tiles of every query head of the GQA group, so the group's sum stays in registers and dK,
//                           dV are written once, without atomics. The scores come out transposed (S^T = K Q^T, rows
//                           are keys), which is the A-fragment layout dV += P^T dO and dK += dS^T Q need: no shared
//                           memory transpose.
//   flash_backward_q_*      dQ (and dS for the bias gradient): a block owns 64 query rows and walks the key tiles, as
//                           the forward does; dQ += dS K is the forward's P V with K in V's place.
// dQ is a second pass over the scores rather than atomic adds from the dK/dV kernel, so every gradient is a fixed
// sum in a fixed order: bitwise reproducible.
//
// Math (per pair i, j a row sees; m_ij the dropout factor, 1 without dropout):
//   P_ij = e^(s_ij - LSE_i),  dV_j = sum_i P_ij m_ij dO_i,  dP_ij = m_ij (dO_i . V_j),  dS_ij = P_ij (dP_ij - Delta_i),
//   dQ_i = scale sum_j dS_ij K_j,  dK_j = scale sum_i dS_ij Q_i,  dBias_ij = dS_ij.
// Hidden pairs take selects, never products: P = 0 where the score is -inf whatever LSE holds, dS = 0 where P = 0
// whatever dP holds (a hidden V may be NaN), and the tensor-core products zero the rows of operands no row of the warp
// sees and guard the non-finite values of mixed tiles (accumulate_values), as the forward does.
//
// Built from flash_forward.cu's helpers (included; its own entry point is left out with AE_BACKWARD), with the same
// macros: -DAE_HEAD_DIM, -DAE_BF16, -DAE_F32, -DAE_KEYS_PER_TILE (the query tile of the dK/dV kernel and the key tile
// of the dQ kernel: Bc). The host (engine/Backends/Cuda/CudaBackwardVariant.cs) inlines the include for NVRTC.
// Layouts as the forward's, every row exactly D wide (the host zero-pads D and Dv to the variant's D); fp32 runs
// 3xTF32 like the forward. Values near the float range's edge (where the forward takes its pass 1) are not handled
// specially here, as in the CPU backward.

#define AE_BACKWARD 1
#include "flash_forward.cu"

#define AE_BW_NAME_(kind, d, suffix) flash_backward_##kind##_d##d##suffix
#define AE_BW_NAME(kind, d, suffix) AE_BW_NAME_(kind, d, suffix)
#define AE_BW_NAME_K_(kind, d, suffix, keys) flash_backward_##kind##_d##d##suffix##_k##keys
#define AE_BW_NAME_K(kind, d, suffix, keys) AE_BW_NAME_K_(kind, d, suffix, keys)
#ifdef AE_KEYS_PER_TILE
#define AE_BW_ENTRY(kind) AE_BW_NAME_K(kind, AE_HEAD_DIM, AE_ELEMENT_SUFFIX, AE_KEYS_PER_TILE)
#else
#define AE_BW_ENTRY(kind) AE_BW_NAME(kind, AE_HEAD_DIM, AE_ELEMENT_SUFFIX)
#endif
#define AE_DELTA_ENTRY AE_BW_ENTRY(delta)
#define AE_KV_ENTRY AE_BW_ENTRY(kv)
#define AE_Q_ENTRY AE_BW_ENTRY(q)

struct BackwardParams
{
    FlashParams f;              // the forward call: Q, K, V, the saved O (f.o) and LSE (f.lse, read), masks, dropout
    const elem* d_o;            // dO, laid out like O
    elem* dq; elem* dk; elem* dv;
    float* delta;               // [B, H, Lq] dense: Delta_i
    float* dbias;               // null, or [B, H, Lq, Lk] dense, zero-filled by the host: dS of every pair a row sees
    i64 do_sb, do_sh, do_sr;
    i64 dq_sb, dq_sh, dq_sr;
    i64 dk_sb, dk_sh, dk_sr;
    i64 dv_sb, dv_sh, dv_sr;
    // null, or [B, H, Lq] dense: a factor on every P of the row. Where a saved LSE is too coarse to normalise P (a
    // finite padding bias on every key of a row: LSE = m + ln l rounds to m), the host passes the row's recomputed max
    // m in its LSE slot and 1 / l here, so P = e^(s - m) / l; elsewhere 1.
    const float* row_norm;
};

// The host's mirror (engine/Backends/Cuda/BackwardParams.cs) is tested against this size.
static_assert(sizeof(BackwardParams) == 496, "BackwardParams layout changed: update the host mirror");

namespace flash
{
// One row pitch for every staged tile: each tile serves both as a score operand (read like the forward's Q and K) and
// as a product operand (read like its V).
constexpr int Pitch = QkPitch;

// P from a scaled, masked score and its row's LSE: 0 for a hidden pair (-inf) whatever the LSE holds (a row that sees
// nothing has LSE = -inf, and -inf - -inf is NaN).
__device__ __forceinline__ float probability(float score, float lse)
{
    return score == neg_inf() ? 0.f : ex2_approx_ftz((score - lse) * Log2e);
}

// dS from P, dO . V, the dropout factor and Delta: 0 wherever P is 0 (a hidden key's V may hold NaN or infinity, and a
// dropped pair's dO . V must not reach its row either).
__device__ __forceinline__ float score_gradient(float probability, float dot, float factor, float delta)
{
    float dp = factor == 0.f ? 0.f : dot * factor;
    return probability == 0.f ? 0.f : probability * (dp - delta);
}

// Rows [row_lo, row_lo + 8] of a [16, D] accumulator times `scale` into a strided matrix (rows >= rows skipped).
__device__ __forceinline__ void store_gradient(elem* matrix, i64 stride, int row_lo, int rows, const float (&acc)[D / 8][4], float scale)
{
    int lane = threadIdx.x % 32;
    #pragma unroll
    for (int half = 0; half < 2; half++)
    {
        int r = row_lo + half * 8;
        if (r >= rows) continue;
        elem* out = matrix + r * stride + (lane % 4) * 2;
#ifdef AE_EMULATE
        if (!ae_emu::global_access_valid(matrix + r * stride, D * sizeof(elem), "gradient row store")) return;
#endif
        #pragma unroll
        for (int n = 0; n < D / 8; n++)
        {
#if AE_F32
            out[n * 8] = acc[n][half * 2] * scale;
            out[n * 8 + 1] = acc[n][half * 2 + 1] * scale;
#else
            *(u32*)(out + n * 8) = pack(acc[n][half * 2] * scale, acc[n][half * 2 + 1] * scale);
#endif
        }
    }
}

// The next query tile (index) at or after t holding a row that may see some key of [j0, j1), or `end`.
__device__ __forceinline__ int next_query_tile(const FlashParams& p, int b, int h, int j0, int j1, int t, int end)
{
    for (; t < end; t++)
    {
        int i0 = t * Bc, i1 = min(p.lq, i0 + Bc);
        if (tile_has_blocks(p, b, h, i0, i1, j0, j1)) return t;
    }
    return end;
}

// Runs body(tile, buffer) over the tiles next(first), next(that + 1), ... below `end` (next(t): the first tile at or
// after t with work, or end), each tile's operands staged by stage(tile, buffer) with cp.async one tile ahead into the
// other of two buffers. The loop of the forward kernel, whose own copy stays as it was timed on a GPU.
template <typename Next, typename Stage, typename Body>
__device__ __forceinline__ void pipeline_tiles(int first, int end, Next next, Stage stage, Body body)
{
    int tile = next(first), buffer = 0;
    if (tile < end) stage(tile, 0);
    commit_async();
    while (tile < end)
    {
        int following = next(tile + 1);
        if (following < end)
        {
            stage(following, buffer ^ 1);
            commit_async();
            wait_async<1>();
        }
        else
        {
            wait_async<0>();
        }
        __syncthreads();
        body(tile, buffer);
        __syncthreads(); // the buffer is refilled two tiles on (also before the next head's first refill)
        tile = following;
        buffer ^= 1;
    }
}

// One storage element as a float, exactly (flash_decode.cu's widen: fp16 subnormals, infinities and NaN included).
__device__ __forceinline__ float element_value(elem bits)
{
#if AE_F32
    return bits;
#elif AE_BF16
    return __int_as_float((u32)bits << 16);
#elif defined(AE_EMULATE)
    u32 h = bits, sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0x1fu) return __int_as_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0)
    {
        float magnitude = (float)mantissa * 5.9604644775390625e-8f; // subnormal: mantissa * 2^-24, exact
        return sign ? -magnitude : magnitude;
    }
    return __int_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
#else
    float x;
    asm("cvt.f32.f16 %0, %1;" : "=f"(x) : "h"(bits));
    return x;
#endif
}
} // namespace flash

// Delta_i = sum_c dO_ic O_ic: one warp per row of [B, H, Lq], in fp32, in a fixed order (lanes stride the columns,
// then a butterfly sum).
extern "C" __global__ void __launch_bounds__(flash::Threads) AE_DELTA_ENTRY(const BackwardParams bp)
{
    using namespace flash;
    const FlashParams& p = bp.f;
    long long row = (long long)blockIdx.x * Warps + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    long long rows = (long long)p.batch * p.heads * p.lq;
    if (row >= rows) return;
    int i = (int)(row % p.lq), bh = (int)(row / p.lq), b = bh / p.heads, h = bh % p.heads;
    const elem* d_o = bp.d_o + b * bp.do_sb + h * bp.do_sh + i * bp.do_sr;
    const elem* o = p.o + b * p.o_sb + h * p.o_sh + i * p.o_sr;
#ifdef AE_EMULATE
    if (!ae_emu::global_access_valid(d_o, D * sizeof(elem), "dO row load") || !ae_emu::global_access_valid(o, D * sizeof(elem), "O row load")) return;
#endif
    float sum = 0.f;
    for (int c = lane; c < D; c += 32) sum += element_value(d_o[c]) * element_value(o[c]);
    #pragma unroll
    for (int m = 16; m >= 1; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    if (lane == 0) bp.delta[row] = sum;
}

// dK and dV of 64 keys of one KV head: grid (batch * kv_heads, ceil(Lk / 64)).
extern "C" __global__ void AE_LAUNCH_BOUNDS AE_KV_ENTRY(const BackwardParams bp)
{
    using namespace flash;
    const FlashParams& p = bp.f;
#ifdef AE_EMULATE
    elem* shared = (elem*)ae_emu::dynamic_shared();
#else
    extern __shared__ __align__(16) elem shared[];
#endif
    elem* kb = shared;                 // [Br][Pitch]: the block's keys
    elem* vb = kb + Br * Pitch;        // [Br][Pitch]: their values
    elem* qt = vb + Br * Pitch;        // [2][Bc][Pitch]: query tiles
    elem* dot = qt + 2 * Bc * Pitch;   // [2][Bc][Pitch]: their dO rows

    int bkv = blockIdx.x, b = bkv / p.kv_heads, kvh = bkv % p.kv_heads, group = p.heads / p.kv_heads;
    int j0 = blockIdx.y * Br, j1 = min(p.lk, j0 + Br);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int key_lo = j0 + warp * 16 + lane / 4; // the thread's fragment rows: keys key_lo and key_lo + 8
    bool masks = p.bias || p.keep || p.kinds;

    stage_rows_async<Br, Pitch>(kb, p.k + b * p.k_sb + kvh * p.k_sh, p.k_sr, j0, p.lk);
    stage_rows_async<Br, Pitch>(vb, p.v + b * p.v_sb + kvh * p.v_sh, p.v_sr, j0, p.lk);
    commit_async();

    float dk[D / 8][4], dv[D / 8][4];
    #pragma unroll
    for (int n = 0; n < D / 8; n++) dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.f;
    QFragments none;

    // Queries the band lets see some key of the block: j - i in [band_lo, band_hi] for some j in [j0, j1).
    i64 first = max((i64)0, (i64)j0 - p.band_hi), last = min((i64)p.lq - 1, (i64)(j1 - 1) - p.band_lo);
    int t_begin = (int)(first / Bc), t_end = first > last ? t_begin : (int)(last / Bc) + 1;

    for (int h = kvh * group; h < (kvh + 1) * group; h++)
    {
        const elem* q_head = p.q + b * p.q_sb + h * p.q_sh;
        const elem* do_head = bp.d_o + b * bp.do_sb + h * bp.do_sh;
        const float* lse_head = p.lse + b * p.lse_sb + h * p.lse_sh;
        const float* delta_head = bp.delta + ((i64)b * p.heads + h) * p.lq;

        auto next = [&](int t) { return next_query_tile(p, b, h, j0, j1, t, t_end); };
        auto stage = [&](int t, int buffer)
        {
            stage_rows_async<Bc, Pitch>(qt + buffer * Bc * Pitch, q_head, p.q_sr, t * Bc, p.lq);
            stage_rows_async<Bc, Pitch>(dot + buffer * Bc * Pitch, do_head, bp.do_sr, t * Bc, p.lq);
        };
        pipeline_tiles(t_begin, t_end, next, stage, [&](int tile, int buffer)
        {
            int i0 = tile * Bc, i1 = min(p.lq, i0 + Bc);
            const elem* q_tile = qt + buffer * Bc * Pitch, *do_tile = dot + buffer * Bc * Pitch;
            bool plain = !masks && !p.dropout && i1 - i0 == Bc && j1 - j0 == Br
                && (i64)j0 - (i1 - 1) >= p.band_lo && (i64)(j1 - 1) - i0 <= p.band_hi;

            // S^T = K_w Q^T and dP^T = V_w dO^T: rows are the warp's 16 keys, columns the tile's Bc queries.
            float s[Bc / 8][4], dp[Bc / 8][4];
            score_tile<false, Pitch, Pitch>(s, none, kb, q_tile);
            u32 seen = plain ? mask_scores<true, true>(s, p, b, h, key_lo, i0) : mask_scores<false, true>(s, p, b, h, key_lo, i0);
            score_tile<false, Pitch, Pitch>(dp, none, vb, do_tile);

            // P^T (times the dropout factor) for dV, and dS^T, in place of s and dp.
            #pragma unroll
            for (int n = 0; n < Bc / 8; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    int i = i0 + n * 8 + (lane % 4) * 2 + e % 2, j = key_lo + (e / 2) * 8;
                    bool row = i < p.lq;
                    float lse = row ? lse_head[i * p.lse_sq] : neg_inf(), delta = row ? delta_head[i] : 0.f;
                    float prob = probability(s[n][e], lse);
                    if (bp.row_norm && row) prob *= bp.row_norm[((i64)b * p.heads + h) * p.lq + i];
                    float factor = p.dropout && prob != 0.f ? dropout_factor(p, b, h, i, j) : 1.f;
                    dp[n][e] = score_gradient(prob, dp[n][e], factor, delta);
                    s[n][e] = prob * factor;
                }
            if (plain)
            {
                accumulate_values<true, Pitch>(dv, s, do_tile, 0xffffffffu, false, false);
                accumulate_values<true, Pitch>(dk, dp, q_tile, 0xffffffffu, false, false);
            }
            else
            {
                // Query rows no key of the warp is seen by are zeroed in the fragments, and non-finite elements of rows
                // seen by some keys only reach those keys (guard).
                accumulate_values<false, Pitch>(dv, s, do_tile, seen, true, false);
                accumulate_values<false, Pitch>(dk, dp, q_tile, seen, true, false);
            }
        });
    }
    wait_async<0>();
    store_gradient(bp.dk + b * bp.dk_sb + kvh * bp.dk_sh, bp.dk_sr, key_lo, p.lk, dk, p.scale);
    store_gradient(bp.dv + b * bp.dv_sb + kvh * bp.dv_sh, bp.dv_sr, key_lo, p.lk, dv, 1.f);
}

// dQ of 64 query rows of one head (and dS into dbias when asked): grid (batch * heads, ceil(Lq / 64)).
extern "C" __global__ void AE_LAUNCH_BOUNDS AE_Q_ENTRY(const BackwardParams bp)
{
    using namespace flash;
    const FlashParams& p = bp.f;
#ifdef AE_EMULATE
    elem* shared = (elem*)ae_emu::dynamic_shared();
#else
    extern __shared__ __align__(16) elem shared[];
#endif
    elem* qb = shared;                 // [Br][Pitch]: the block's query rows
    elem* dob = qb + Br * Pitch;       // [Br][Pitch]: their dO rows
    elem* kt = dob + Br * Pitch;       // [2][Bc][Pitch]: key tiles
    elem* vt = kt + 2 * Bc * Pitch;    // [2][Bc][Pitch]: value tiles

    int bh = blockIdx.x, b = bh / p.heads, h = bh % p.heads, kvh = h / (p.heads / p.kv_heads);
    int i0 = blockIdx.y * Br, i1 = min(p.lq, i0 + Br);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int row_lo = i0 + warp * 16 + lane / 4;
    const elem* k_head = p.k + b * p.k_sb + kvh * p.k_sh;
    const elem* v_head = p.v + b * p.v_sb + kvh * p.v_sh;
    bool masks = p.bias || p.keep || p.kinds;

    stage_rows_async<Br, Pitch>(qb, p.q + b * p.q_sb + h * p.q_sh, p.q_sr, i0, p.lq);
    stage_rows_async<Br, Pitch>(dob, bp.d_o + b * bp.do_sb + h * bp.do_sh, bp.do_sr, i0, p.lq);
    commit_async();

    // The thread's two rows' LSE and Delta (a row past Lq: -inf, so all its P are 0).
    float lse[2], delta[2], norm[2];
    #pragma unroll
    for (int half = 0; half < 2; half++)
    {
        int i = row_lo + half * 8;
        bool row = i < p.lq;
        lse[half] = row ? p.lse[b * p.lse_sb + h * p.lse_sh + i * p.lse_sq] : neg_inf();
        delta[half] = row ? bp.delta[((i64)b * p.heads + h) * p.lq + i] : 0.f;
        norm[half] = row && bp.row_norm ? bp.row_norm[((i64)b * p.heads + h) * p.lq + i] : 1.f;
    }

    float dq[D / 8][4];
    #pragma unroll
    for (int n = 0; n < D / 8; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
    QFragments none;

    i64 first = max((i64)0, (i64)i0 + p.band_lo), last = min((i64)p.lk - 1, (i64)(i1 - 1) + p.band_hi);
    int t_begin = (int)(first / Bc), t_end = first > last ? t_begin : (int)(last / Bc) + 1;
    auto next = [&](int t) { return next_tile(p, b, h, i0, i1, t, t_end); };
    auto stage = [&](int t, int buffer)
    {
        stage_rows_async<Bc, Pitch>(kt + buffer * Bc * Pitch, k_head, p.k_sr, t * Bc, p.lk);
        stage_rows_async<Bc, Pitch>(vt + buffer * Bc * Pitch, v_head, p.v_sr, t * Bc, p.lk);
    };
    pipeline_tiles(t_begin, t_end, next, stage, [&](int tile, int buffer)
    {
        int j0 = tile * Bc;
        const elem* k_tile = kt + buffer * Bc * Pitch, *v_tile = vt + buffer * Bc * Pitch;
        bool plain = !masks && !p.dropout && j0 + Bc <= p.lk && i1 - i0 == Br
            && (i64)j0 - (i1 - 1) >= p.band_lo && (i64)(j0 + Bc - 1) - i0 <= p.band_hi;

        float s[Bc / 8][4], dp[Bc / 8][4];
        score_tile<false, Pitch, Pitch>(s, none, qb, k_tile);
        u32 seen = plain ? mask_scores<true>(s, p, b, h, row_lo, j0) : mask_scores<false>(s, p, b, h, row_lo, j0);
        score_tile<false, Pitch, Pitch>(dp, none, dob, v_tile);
        #pragma unroll
        for (int n = 0; n < Bc / 8; n++)
            #pragma unroll
            for (int e = 0; e < 4; e++)
            {
                int i = row_lo + (e / 2) * 8, j = j0 + n * 8 + (lane % 4) * 2 + e % 2;
                float prob = probability(s[n][e], lse[e / 2]) * norm[e / 2];
                float factor = p.dropout && prob != 0.f ? dropout_factor(p, b, h, i, j) : 1.f;
                float ds = score_gradient(prob, dp[n][e], factor, delta[e / 2]);
                s[n][e] = ds;
                if (bp.dbias && i < p.lq && j < p.lk)
                {
                    float* target = bp.dbias + (((i64)b * p.heads + h) * p.lq + i) * p.lk + j;
#ifdef AE_EMULATE
                    if (!ae_emu::global_access_valid(target, sizeof(float), "bias gradient store")) continue;
#endif
                    *target = ds;
                }
            }
        if (plain) accumulate_values<true, Pitch>(dq, s, k_tile, 0xffffffffu, false, false);
        else accumulate_values<false, Pitch>(dq, s, k_tile, seen, true, false);
    });
    wait_async<0>();
    store_gradient(bp.dq + b * bp.dq_sb + h * bp.dq_sh, bp.dq_sr, row_lo, p.lq, dq, p.scale);
}

#ifdef AE_EMULATE
AE_EMULATED_KERNEL(AE_DELTA_ENTRY, BackwardParams, flash::Threads)
AE_EMULATED_KERNEL(AE_KV_ENTRY, BackwardParams, flash::Threads)
AE_EMULATED_KERNEL(AE_Q_ENTRY, BackwardParams, flash::Threads)
#endif
