// Attention for few queries per head (decode: Lq <= 8) with the keys split across thread blocks (split-KV, as
// FlashDecoding does), then an exact merge of the splits' partial results by their LSE. A call with Lq = 1 and a long
// cache gives the flash kernel one 64-row tile per head, 63 rows of it idle, and one block per head for the whole
// cache; here a block takes the rows of one KV head's query group (GQA heads packed as rows, 4 at a time) over one
// range of keys, so a few heads still fill the GPU.
//
// Self-contained (no CUDA headers), compiled by NVRTC at first use or by nvcc into a fatbin, once per element type:
//   -DAE_BF16=0|1, -DAE_F32=0|1 (fp16 when both are 0). K and V are contiguous per sequence, or paged (vLLM's
// layout: [pages, page size, KV heads, D] through a block table per sequence, each sequence with its own length). Entry points flash_decode_<f16|bf16|f32>(DecodeParams) and
// flash_decode_merge_<f16|bf16|f32>(DecodeParams). The CPU emulator (tests/CudaEmulator) compiles it with -DAE_EMULATE.
//
// flash_decode: grid (batch * kv_heads, splits, row chunks of 4), 128 threads, SharedBytes of dynamic shared memory.
// Lanes work in groups of 8, 16 or 32 (the head dimension over 8 columns per lane), a group per key: it reads the
// key's K and V rows whole (16-byte loads, coalesced, several keys' loads in flight), sums the dot products of its
// lanes by shuffles and keeps its own online softmax and outputs, with no barrier in the key loop; the groups'
// partial results merge in a fixed order at the end. Only keys some row may see are read, and a hidden key's K and V
// (NaN, Inf, anything) only ever meet selects, never a product that reaches a row. Writes O / l and the LSE of its
// keys per row to fp32 partials.
// flash_decode_merge: one thread per (row, column) over all splits, in double: O = sum_s e^(lse_s - M) O_s / sum_s
// e^(lse_s - M), LSE = M + log(sum), zeros and -inf for a row that saw no key.
//
// Masks: the diagonal band (causal or sliding window, aligned by the host or to each sequence's end) and the key
// length; calls with a bias,
// keep-mask, block mask or dropout run the flash kernel instead.

#ifndef AE_BF16
#define AE_BF16 0
#endif
#ifndef AE_F32
#define AE_F32 0
#endif

#if AE_F32
#define AE_ELEMENT_SUFFIX _f32
#elif AE_BF16
#define AE_ELEMENT_SUFFIX _bf16
#else
#define AE_ELEMENT_SUFFIX _f16
#endif
#define AE_NAME_(base, suffix) base##suffix
#define AE_NAME(base, suffix) AE_NAME_(base, suffix)
#define AE_DECODE_ENTRY AE_NAME(flash_decode, AE_ELEMENT_SUFFIX)
#define AE_MERGE_ENTRY AE_NAME(flash_decode_merge, AE_ELEMENT_SUFFIX)

#ifdef AE_EMULATE
#include "emulated_device.h"
#endif

typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;
#if AE_F32
typedef float elem;
#else
typedef u16 elem;
#endif

struct DecodeParams
{
    // Pointers first, then 64-bit, then 32-bit fields: the host mirrors this order (engine/Backends/Cuda/DecodeParams.cs).
    const elem* q; const elem* k; const elem* v; elem* o;
    float* lse;                 // null: LSE not wanted
    float* partial_o;           // [splits][batch][heads][lq][dv] fp32: each split's O / l
    float* partial_lse;         // [splits][batch][heads][lq]
    const int* block_table;     // null: K and V contiguous per sequence. Else paged: key j of sequence b lives in page
                                // block_table[b * table_stride + j / page_size], slot j % page_size
    const int* key_lengths;     // null: every sequence has lk keys. Else sequence b has key_lengths[b] (<= lk)
    i64 band_lo, band_hi;       // key - query must lie in [band_lo, band_hi] (shifted by lk_b - lq when band_from_end)
    i64 q_sb, q_sh, q_sr;       // element (b, h, i, c) of Q at b*q_sb + h*q_sh + i*q_sr + c; likewise O
    i64 k_sb, k_sh, k_sr;       // contiguous: (b, h, j, c) at b*k_sb + h*k_sh + j*k_sr + c. Paged: (page, slot, h, c)
    i64 v_sb, v_sh, v_sr;       // at page*k_sb + slot*k_sr + h*k_sh + c. Likewise V
    i64 o_sb, o_sh, o_sr;
    i64 lse_sb, lse_sh, lse_sq;
    i64 table_stride;
    int batch, heads, kv_heads, lq, lk;
    int d, dv;                  // columns of Q and K; of V and O (each up to 256)
    int splits, keys_per_split; // split s takes keys [s * keys_per_split, (s + 1) * keys_per_split)
    int page_size;
    int band_from_end;          // 1: the band is relative to the end of each sequence's keys (bottom-right alignment)
    float scale;
};

static_assert(sizeof(DecodeParams) == 264, "DecodeParams layout changed: update the host mirror");

namespace decode
{
constexpr int Threads = 128;
constexpr int Rows = 4;           // query rows per block (a KV head's group x Lq, in chunks of 4): q and O in registers
constexpr int Columns = 8;        // columns per lane: one 16-byte load of fp16/bf16 (two of fp32)
// Keys per lane group and step whose K and V loads are in flight together (one on the element-wise path, which
// serves paged caches with odd strides or head dimensions and would otherwise hold many more registers).
constexpr int VectorUnroll = AE_F32 ? 2 : 4;
constexpr float Log2e = 1.4426950408889634f;
constexpr float PassOneScale = 1.f / 4294967296.f; // 2^-32, as in flash_forward.cu

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }
__device__ __forceinline__ float saturate_score(float x)
{
    const float most = __int_as_float(0x7f7fffffu);
    return x > most ? most : x < -most ? -most : x;
}
__device__ __forceinline__ bool non_finite(float x) { return (__float_as_uint(x) & 0x7f800000u) == 0x7f800000u; }

// One storage element as a float, exactly (fp16 subnormals, infinities and NaN included).
__device__ __forceinline__ float widen(elem bits)
{
#if AE_F32
    return bits;
#elif AE_BF16
    return __int_as_float((u32)bits << 16);
#elif defined(AE_EMULATE)
    // cvt.f32.f16 is exact; the emulator spells the conversion out.
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

#ifdef AE_EMULATE
__device__ __forceinline__ elem store_value(float x)
{
#if AE_F32
    return x;
#elif AE_BF16
    return ae_emu::float_to_bfloat16(x);
#else
    return ae_emu::float_to_half(x);
#endif
}
#else
__device__ __forceinline__ elem store_value(float x)
{
#if AE_F32
    return x;
#else
    u32 r;
#if AE_BF16
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(0.f), "f"(x));
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(0.f), "f"(x));
#endif
    return (elem)(r & 0xffffu);
#endif
}
#endif

#ifdef AE_EMULATE
using namespace ae_emu::ptx;
#else
__device__ __forceinline__ u32 shared_address(const void* p) { return (u32)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared without a register round trip; valid = false writes zeros and reads nothing.
__device__ __forceinline__ void copy16_async(void* shared, const void* global, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(shared_address(shared)), "l"(global), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void commit_async() { asm volatile("cp.async.commit_group;"); }
template <int Pending> __device__ __forceinline__ void wait_async() { asm volatile("cp.async.wait_group %0;" :: "n"(Pending)); }
#endif

// A lane's eight columns of one K or V row, as stored: one 16-byte chunk (two in fp32), as 32-bit words.
constexpr int ChunksPerRow = (int)sizeof(elem) * Columns / 16;
struct alignas(16) Chunk16 { u32 w[4]; };
struct Raw { Chunk16 c[ChunksPerRow]; };

// Column e (0-7) of a lane's chunk as a float, exactly.
__device__ __forceinline__ float column(const Raw& x, int e)
{
#if AE_F32
    return __int_as_float(x.c[e / 4].w[e % 4]);
#elif AE_BF16
    u32 w = x.c[0].w[e / 2];
    return __int_as_float(e % 2 ? w & 0xffff0000u : w << 16);
#else
    u32 w = x.c[0].w[e / 2];
    return widen((elem)(e % 2 ? w >> 16 : w & 0xffffu));
#endif
}

// Columns [c0, c0 + 8) of the row at `row`, element by element, zeros past `columns`: the path for rows that are not
// 16-byte aligned or head dimensions that are not a multiple of 8 (a paged cache's own layout).
__device__ __forceinline__ Raw load_columns(const elem* row, int c0, int columns)
{
    Raw x;
    #pragma unroll
    for (int e = 0; e < Columns; e++)
    {
        elem bits = c0 + e < columns ? row[c0 + e] : (elem)0;
#if AE_F32
        x.c[e / 4].w[e % 4] = __float_as_uint(bits);
#else
        u32& w = x.c[0].w[e / 2];
        w = e % 2 ? w | (u32)bits << 16 : (u32)bits;
#endif
    }
    return x;
}

// The key loop's ring of cp.async stages: per stage, key slot u, K or V, and 16-byte chunk, one chunk per thread, laid
// out so that a warp's 32 chunks are contiguous (conflict-free). Each lane copies exactly the chunks it later reads
// (its columns of its group's keys), so it needs only its own cp.async wait, never a barrier.
constexpr int Stages = 3;
constexpr int StageChunks = VectorUnroll * 2 * ChunksPerRow; // per lane and stage

struct Merge
{
    float o[Rows * Threads * Columns]; // each lane group's unnormalised O: [group][row][group lanes * 8 columns]
    float m[Threads / 8][Rows];        // each group's row maxima and sums (at most 16 groups, of 8 lanes)
    float l[Threads / 8][Rows];
    int bad[Rows];                     // the row's output came out non-finite
};
union Shared
{
    Chunk16 ring[Stages][StageChunks][Threads]; // during the key loop
    Merge merge;                                // after it (a barrier apart)
};
constexpr int SharedBytes = 49152; // CudaDecodeKernel.SharedBytes on the host: 48 KiB, the most without an opt-in
static_assert(sizeof(Shared) == SharedBytes, "the shared layout changed: update the host's launch size");

__device__ __forceinline__ double neg_inf_double()
{
    union { unsigned long long bits; double value; } x = { 0xfff0000000000000ull };
    return x.value;
}

// Where key j of sequence b starts in K or V (before the head's offset): its row, or its page and slot.
__device__ __forceinline__ i64 key_offset(const DecodeParams& p, int b, int j, i64 batch_or_page_stride, i64 row_stride)
{
    if (!p.block_table) return (i64)j * row_stride;
    i64 page = p.block_table[b * p.table_stride + j / p.page_size];
    return page * batch_or_page_stride + (i64)(j % p.page_size) * row_stride;
}

// The block's rows [row0, row0 + rows) of the KV head's group: row r is query i = r % lq of head kvh * group + r / lq.
__device__ __forceinline__ void row_of(const DecodeParams& p, int kvh, int r, int& h, int& i)
{
    int group = p.heads / p.kv_heads;
    h = kvh * group + r / p.lq;
    i = r % p.lq;
}

__device__ __forceinline__ bool aligned16(const void* pointer) { return ((unsigned long long)pointer & 15u) == 0; }

// The split kernel for lane groups of G lanes (8 columns each: G = 8 up to 64 columns, 16 up to 128, 32 up to 256).
// Each group takes its own keys (key j0 + u * groups + group of each step), keeps its own online softmax (row maxima
// and sums, replicated over its lanes) and its rows' O for its lanes' columns; the dot products are summed over the
// group by shuffles. At the end the groups are merged through shared memory in a fixed order, so the bits do not
// depend on scheduling. No barrier inside the key loop: every group streams its K and V rows (whole rows, coalesced,
// Unroll keys' loads in flight) at its own pace.
template <int G, bool Vector>
__device__ __forceinline__ void run_split(const DecodeParams& p, Shared& sh)
{
    constexpr int Groups = Threads / G, Unroll = Vector ? VectorUnroll : 1;
    int split = blockIdx.y, b = blockIdx.x / p.kv_heads, kvh = blockIdx.x % p.kv_heads;
    int group_rows = p.heads / p.kv_heads * p.lq, row0 = blockIdx.z * Rows, rows = min(Rows, group_rows - row0);
    int t = threadIdx.x, group = t / G, c0 = t % G * Columns;
    int lk = p.key_lengths ? p.key_lengths[b] : p.lk;
    int key_begin = split * p.keys_per_split, key_end = min(lk, key_begin + p.keys_per_split);
    i64 shift = p.band_from_end ? (i64)lk - p.lq : 0;
    const elem* k_head = p.k + (p.block_table ? 0 : b * p.k_sb) + kvh * p.k_sh;
    const elem* v_head = p.v + (p.block_table ? 0 : b * p.v_sb) + kvh * p.v_sh;
    // The rows' band, as key ranges [lo, hi] (empty for rows past the block's), and the keys some row may see.
    int lo[Rows], hi[Rows], any_lo = 0x7fffffff, any_hi = -1;
    float q[Rows][Columns];
    #pragma unroll
    for (int r = 0; r < Rows; r++)
    {
        lo[r] = 1; hi[r] = 0;
        #pragma unroll
        for (int e = 0; e < Columns; e++) q[r][e] = 0.f;
        if (r < rows)
        {
            int h, i;
            row_of(p, kvh, row0 + r, h, i);
            // Clamped to [0, lk]: the keys are ints, the band's ends need not be.
            lo[r] = (int)max((i64)0, min((i64)lk, i + shift + p.band_lo));
            hi[r] = (int)max((i64)-1, min((i64)lk, i + shift + p.band_hi));
            any_lo = min(any_lo, lo[r]);
            any_hi = max(any_hi, hi[r]);
            const elem* query = p.q + b * p.q_sb + h * p.q_sh + i * p.q_sr;
            #pragma unroll
            for (int e = 0; e < Columns; e++)
                if (c0 + e < p.d) q[r][e] = widen(query[c0 + e]);
        }
    }
    // Keys [first, last): the steps before and after the rows' bands are skipped whole, so a key's lane group and
    // step (which set the order of its row's sums) depend on the split alone, not on which rows share the block
    // (a GQA call gives the bits of the same call with its K and V heads repeated). A step that hides every key from
    // a row leaves that row's maxima, sums and outputs bit for bit as they were.
    constexpr int StepKeys = Groups * Unroll;
    int first = key_begin + max(0, any_lo - key_begin) / StepKeys * StepKeys, last = min(key_end, any_hi + 1);
    int steps = first < last ? (last - first + StepKeys - 1) / StepKeys : 0;
    constexpr int PerChunk = 16 / (int)sizeof(elem);
    // Vector: the step's K and V chunks of this lane into the ring (zeros for columns past D; nothing read for keys
    // past the last). Always one commit per call, so that the wait below counts steps.
    auto issue = [&](int step) {
        if (Vector && step < steps)
        {
            int stage = step % Stages;
            #pragma unroll
            for (int u = 0; u < Unroll; u++)
            {
                int j = first + step * StepKeys + u * Groups + group;
                bool ok = j < last;
                const elem* k_row = ok ? k_head + key_offset(p, b, j, p.k_sb, p.k_sr) + c0 : k_head;
                const elem* v_row = ok ? v_head + key_offset(p, b, j, p.v_sb, p.v_sr) + c0 : v_head;
                #pragma unroll
                for (int c = 0; c < ChunksPerRow; c++)
                {
                    copy16_async(&sh.ring[stage][(u * 2) * ChunksPerRow + c][t], k_row + c * PerChunk, ok && c0 < p.d);
                    copy16_async(&sh.ring[stage][(u * 2 + 1) * ChunksPerRow + c][t], v_row + c * PerChunk, ok && c0 < p.dv);
                }
            }
        }
        if (Vector) commit_async();
    };
    u32 bad_rows = 0; // after pass 0: the rows whose output came out non-finite, one bit each

    // Pass 0 is the kernel. A row whose output came out non-finite runs pass 1, with V entering at 2^-32 so that a
    // sum of values near the float range cannot overflow where their average does not (see flash_forward.cu).
    for (int pass = 0; pass < 2; pass++)
    {
        bool scaled = pass == 1;
        float o[Rows][Columns], m[Rows], l[Rows];
        #pragma unroll
        for (int r = 0; r < Rows; r++)
        {
            m[r] = neg_inf(); l[r] = 0.f;
            #pragma unroll
            for (int e = 0; e < Columns; e++) o[r][e] = 0.f;
        }

        #pragma unroll 1
        for (int step = 0; step < Stages - 1; step++) issue(step);
        #pragma unroll 1
        for (int step = 0; step < steps; step++)
        {
            int j0 = first + step * StepKeys;
            // The keys of the step: only keys some row may see are read (a paged sequence's pages end with its keys),
            // and a hidden key's K and V, whatever they hold, only ever meet selects.
            Raw kx[Unroll], vx[Unroll];
            bool load[Unroll];
            if (Vector)
            {
                // The ring runs Stages - 1 steps ahead: refill the slot the last step read, then wait for this one.
                issue(step + Stages - 1);
                wait_async<Stages - 1>();
            }
            #pragma unroll
            for (int u = 0; u < Unroll; u++)
            {
                int j = j0 + u * Groups + group;
                load[u] = j < last;
                if (Vector)
                {
                    #pragma unroll
                    for (int c = 0; c < ChunksPerRow; c++)
                    {
                        kx[u].c[c] = sh.ring[step % Stages][(u * 2) * ChunksPerRow + c][t];
                        vx[u].c[c] = sh.ring[step % Stages][(u * 2 + 1) * ChunksPerRow + c][t];
                    }
                }
                else if (load[u])
                {
                    kx[u] = load_columns(k_head + key_offset(p, b, j, p.k_sb, p.k_sr), c0, p.d);
                    vx[u] = load_columns(v_head + key_offset(p, b, j, p.v_sb, p.v_sr), c0, p.dv);
                }
            }
            // Scores: each lane's eight products, summed over the group by a butterfly (every lane ends with the sum).
            float s[Unroll][Rows];
            #pragma unroll
            for (int u = 0; u < Unroll; u++)
            {
                float k[Columns];
                #pragma unroll
                for (int e = 0; e < Columns; e++) k[e] = load[u] ? column(kx[u], e) : 0.f;
                #pragma unroll
                for (int r = 0; r < Rows; r++)
                {
                    if (r >= rows) { s[u][r] = 0.f; continue; } // block-uniform: an MHA decode has one row
                    float dot = 0.f;
                    #pragma unroll
                    for (int e = 0; e < Columns; e++) dot = fmaf(q[r][e], k[e], dot);
                    s[u][r] = dot;
                }
            }
            #pragma unroll
            for (int mask = G / 2; mask >= 1; mask /= 2)
                #pragma unroll
                for (int u = 0; u < Unroll; u++)
                    #pragma unroll
                    for (int r = 0; r < Rows; r++) s[u][r] += __shfl_xor_sync(0xffffffffu, s[u][r], mask);
            // Online softmax per row over the step's keys; hidden keys score -inf and get probability 0.
            #pragma unroll
            for (int r = 0; r < Rows; r++)
            {
                float most = m[r];
                #pragma unroll
                for (int u = 0; u < Unroll; u++)
                {
                    int j = j0 + u * Groups + group;
                    bool seen = load[u] && j >= lo[r] && j <= hi[r];
                    s[u][r] = seen ? saturate_score(s[u][r] * p.scale) : neg_inf();
                    most = fmaxf(most, s[u][r]);
                }
                // An unchanged maximum rescales by exactly 1 (as in flash_forward.cu's online softmax): no drift of O
                // and l over a long cache whose maximum came early, whatever the exponential's last bits.
                float rescale = m[r] == neg_inf() ? 0.f : m[r] == most ? 1.f : exp2f((m[r] - most) * Log2e), sum = 0.f;
                #pragma unroll
                for (int u = 0; u < Unroll; u++)
                {
                    s[u][r] = s[u][r] == neg_inf() ? 0.f : exp2f((s[u][r] - most) * Log2e);
                    sum += s[u][r];
                }
                l[r] = l[r] * rescale + sum;
                m[r] = most;
                #pragma unroll
                for (int e = 0; e < Columns; e++) o[r][e] *= rescale;
            }
            // O += P V; a probability of 0 (a hidden key) skips its value row (uniform over the group's lanes).
            #pragma unroll
            for (int u = 0; u < Unroll; u++)
            {
                float v[Columns];
                #pragma unroll
                for (int e = 0; e < Columns; e++)
                {
                    v[e] = load[u] ? column(vx[u], e) : 0.f;
                    if (scaled) v[e] *= PassOneScale;
                }
                #pragma unroll
                for (int r = 0; r < Rows; r++)
                    if (r < rows && s[u][r] != 0.f)
                        #pragma unroll
                        for (int e = 0; e < Columns; e++) o[r][e] = fmaf(s[u][r], v[e], o[r][e]);
            }
        }

        if (Vector) wait_async<0>();
        __syncthreads(); // every lane is done with the ring, which the merge area overlays

        // The groups' partial results, merged in group order: weights e^(m_g - M), O = Σ w_g O_g / Σ w_g l_g.
        Merge& mg = sh.merge;
        #pragma unroll
        for (int r = 0; r < Rows; r++)
        {
            #pragma unroll
            for (int e = 0; e < Columns; e++) mg.o[(group * Rows + r) * G * Columns + c0 + e] = o[r][e];
            if (t % G == 0) { mg.m[group][r] = m[r]; mg.l[group][r] = l[r]; }
        }
        if (t < Rows) mg.bad[t] = 0;
        __syncthreads();
        float row_most[Rows], row_sum[Rows];
        #pragma unroll
        for (int r = 0; r < Rows; r++)
        {
            float most = neg_inf(), sum = 0.f;
            for (int g = 0; g < Groups; g++) most = fmaxf(most, mg.m[g][r]);
            for (int g = 0; g < Groups; g++)
                if (mg.m[g][r] != neg_inf()) sum += mg.l[g][r] * exp2f((mg.m[g][r] - most) * Log2e);
            row_most[r] = most;
            row_sum[r] = sum;
        }
        for (int pass_write = 0; pass_write < 2; pass_write++)
        {
            // First the flags (pass 0 only), then the writes: pass 0 writes every row, pass 1 the rows that came out
            // non-finite (the others keep pass 0's bits).
            if (pass_write == 0 && pass == 1) continue;
            for (int x = t; x < Rows * p.dv; x += Threads)
            {
                int r = x / p.dv, c = x % p.dv;
                if (r >= rows || (pass == 1 && !((bad_rows >> r) & 1u))) continue;
                float acc = 0.f;
                if (row_sum[r] != 0.f)
                    for (int g = 0; g < Groups; g++)
                        if (mg.m[g][r] != neg_inf())
                            acc += mg.o[(g * Rows + r) * G * Columns + c] * exp2f((mg.m[g][r] - row_most[r]) * Log2e);
                float value = row_sum[r] == 0.f ? 0.f : acc / row_sum[r];
                if (pass_write == 0)
                {
                    if (non_finite(value)) mg.bad[r] = 1;
                    continue;
                }
                if (pass == 1) value *= 1.f / PassOneScale;
                int h, i;
                row_of(p, kvh, row0 + r, h, i);
                p.partial_o[((((i64)split * p.batch + b) * p.heads + h) * p.lq + i) * p.dv + c] = value;
            }
            __syncthreads();
            if (pass_write == 0)
                #pragma unroll
                for (int r = 0; r < Rows; r++) bad_rows |= (mg.bad[r] != 0 ? 1u : 0u) << r;
        }
        if (t < rows && pass == 0) // pass 1 has the same scores, so the same maxima and sums
        {
            int h, i;
            row_of(p, kvh, row0 + t, h, i);
            p.partial_lse[(((i64)split * p.batch + b) * p.heads + h) * p.lq + i] = row_sum[t] == 0.f ? neg_inf() : row_most[t] + logf(row_sum[t]);
        }
        // The last barrier above: every lane has read the merge area before pass 1's ring overwrites it.
        if (bad_rows == 0) break;
    }
}
} // namespace decode

extern "C" __global__ void __launch_bounds__(decode::Threads, 2) AE_DECODE_ENTRY(const DecodeParams p)
{
    using namespace decode;
#ifdef AE_EMULATE
    Shared& sh = *(Shared*)ae_emu::dynamic_shared();
#else
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    Shared& sh = *(Shared*)shared_bytes;
#endif
    // Whole-chunk loads need every row start 16-byte aligned (the base pointers and every stride between rows) and
    // whole chunks of columns; contiguous calls always meet this (the host packs Q, K and V to the kernel's D).
    constexpr int PerChunk = 16 / (int)sizeof(elem);
    int b = blockIdx.x / p.kv_heads, kvh = blockIdx.x % p.kv_heads;
    const elem* k_head = p.k + (p.block_table ? 0 : b * p.k_sb) + kvh * p.k_sh;
    const elem* v_head = p.v + (p.block_table ? 0 : b * p.v_sb) + kvh * p.v_sh;
    bool vector = aligned16(k_head) && aligned16(v_head) && p.k_sr % PerChunk == 0 && p.v_sr % PerChunk == 0
        && p.k_sb % PerChunk == 0 && p.v_sb % PerChunk == 0 && p.d % Columns == 0 && p.dv % Columns == 0;
    int columns = max(p.d, p.dv);
    if (!vector) run_split<32, false>(p, sh);
    else if (columns <= 8 * Columns) run_split<8, true>(p, sh);
    else if (columns <= 16 * Columns) run_split<16, true>(p, sh);
    else run_split<32, true>(p, sh);
}

// One thread per (row, column): the splits' partial results merged exactly (in double) by their LSE.
extern "C" __global__ void __launch_bounds__(decode::Threads) AE_MERGE_ENTRY(const DecodeParams p)
{
    using namespace decode;
    i64 x = (i64)blockIdx.x * Threads + threadIdx.x, rows = (i64)p.batch * p.heads * p.lq;
    if (x >= rows * p.dv) return;
    i64 row = x / p.dv;
    int c = (int)(x % p.dv);
    int i = (int)(row % p.lq), h = (int)(row / p.lq % p.heads), b = (int)(row / p.lq / p.heads);
    double most = neg_inf_double();
    bool nan = false;
    for (int s = 0; s < p.splits; s++)
    {
        double lse = p.partial_lse[(i64)s * rows + row];
        nan |= lse != lse;
        most = lse > most ? lse : most;
    }
    double sum = 0.0, acc = 0.0;
    if (most != neg_inf_double())
        for (int s = 0; s < p.splits; s++)
        {
            double lse = p.partial_lse[(i64)s * rows + row];
            if (lse == neg_inf_double()) continue; // a split that saw no key of this row: its partial O is zeros
            double weight = exp(lse - most);
            sum += weight;
            acc += weight * p.partial_o[((i64)s * rows + row) * p.dv + c];
        }
    float value = nan ? __int_as_float(0x7fc00000u) : sum == 0.0 ? 0.f : (float)(acc / sum);
    elem* out = p.o + b * p.o_sb + h * p.o_sh + i * p.o_sr + c;
#ifdef AE_EMULATE
    if (!ae_emu::global_access_valid(out, sizeof(elem), "output store")) return;
#endif
    *out = store_value(value);
    if (c == 0 && p.lse)
    {
        float* lse = p.lse + b * p.lse_sb + h * p.lse_sh + i * p.lse_sq;
#ifdef AE_EMULATE
        if (!ae_emu::global_access_valid(lse, sizeof(float), "LSE store")) return;
#endif
        *lse = nan ? __int_as_float(0x7fc00000u) : sum == 0.0 ? neg_inf() : (float)(most + log(sum));
    }
}

#ifdef AE_EMULATE
AE_EMULATED_KERNEL(AE_DECODE_ENTRY, DecodeParams, decode::Threads)
AE_EMULATED_KERNEL(AE_MERGE_ENTRY, DecodeParams, decode::Threads)
#endif
