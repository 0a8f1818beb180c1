// Flash-attention forward on tensor cores (sm_80+): fp16, bf16 or fp32 storage, fp32 accumulation and softmax.
// fp32 runs as 3xTF32: each operand x = big + small with big = tf32(x), small = tf32(x - big), and a*b is accumulated
// as big*big + big*small + small*big (the dropped small*small is below fp32's rounding), so fp32 inputs keep close to
// fp32 accuracy at three tf32 mma per product instead of falling to tf32's 10-bit mantissa.
//
// Self-contained on purpose (no CUDA runtime headers): NVRTC compiles it at first use, and nvcc builds the same file
// into the fatbin (CMakeLists.txt). One compile per head dimension and element type:
//   -DAE_HEAD_DIM=32|64|96|128|256   (other D are padded with zeros on the host to the next of these)
//   -DAE_BF16=0|1, -DAE_F32=0|1   (fp16 when both are 0)
//   -DAE_KEYS_PER_TILE=<Bc>   (optional: fewer keys per K/V tile than the default below, for devices whose opt-in
//                              shared memory per block is smaller, e.g. 99 KiB on sm_86/sm_89/sm_120; the host picks)
// Entry point: flash_forward_d<D>_<f16|bf16|f32>(FlashParams), with _k<Bc> appended for a smaller tile, named per
// variant so profiles and the CPU emulator (tests/CudaEmulator, which compiles this file as C++ with -DAE_EMULATE) can
// tell variants apart.
// Grid (batch * heads, ceil(Lq / 64)), 128 threads, dynamic shared memory for the Q tile and two K and V buffers
// (CudaFlashVariant.SharedBytes mirrors the sizes below; above 48 KiB the host raises the function's limit).
//
// Layout: Q [B, H, Lq, D], K [B, Hkv, Lk, D], V [B, Hkv, Lk, D], O [B, H, Lq, D] and LSE [B, H, Lq], each with its own
// batch, head and row strides (in elements; columns are contiguous). Every Q/K/V/O row holds exactly D columns (the
// host zero-pads other head dimensions) and starts 16-byte aligned, for cp.async and ldmatrix: device tensors that
// meet this are read and written in place, others are packed by strided_copy.cu first. Masks stay as the caller gave them:
// the diagonal band, an additive fp32 bias and a keep-mask with broadcast strides, and a block mask (kinds per block,
// with the pairs of partial blocks evaluated on the host).
//
// Each warp owns 16 query rows; S = Q K^T and O += P V are m16n8k16 mma.sync on fragments loaded by ldmatrix, K/V
// tiles are double-buffered with cp.async, and P goes from the S accumulators straight into A fragments (no shared
// memory round trip), as in FlashAttention-2.

#ifndef AE_HEAD_DIM
#error "define AE_HEAD_DIM (32, 64, 96, 128 or 256)"
#endif
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
#define AE_ENTRY_NAME_(d, suffix) flash_forward_d##d##suffix
#define AE_ENTRY_NAME(d, suffix) AE_ENTRY_NAME_(d, suffix)
#define AE_ENTRY_NAME_K_(d, suffix, keys) flash_forward_d##d##suffix##_k##keys
#define AE_ENTRY_NAME_K(d, suffix, keys) AE_ENTRY_NAME_K_(d, suffix, keys)
#ifdef AE_KEYS_PER_TILE
#define AE_ENTRY AE_ENTRY_NAME_K(AE_HEAD_DIM, AE_ELEMENT_SUFFIX, AE_KEYS_PER_TILE)
#else
#define AE_ENTRY AE_ENTRY_NAME(AE_HEAD_DIM, AE_ELEMENT_SUFFIX)
#endif

#ifdef AE_EMULATE
// The CPU emulator supplies CUDA's built-ins and the PTX operations below with their documented lane semantics.
#include "emulated_device.h"
#endif

typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;
#if AE_F32
typedef float elem;  // storage element
#else
typedef u16 elem;    // fp16 or bf16 bits
#endif

struct FlashParams
{
    // Pointers first, then 64-bit, then 32-bit fields: the host mirrors this order with [StructLayout(Sequential)].
    const elem* q; const elem* k; const elem* v; elem* o;
    float* lse;                 // null: LSE not wanted
    const float* bias;          // null: no bias. Element (b, h, i, j) at b*bias_sb + h*bias_sh + i*bias_sq + j.
    const unsigned char* keep;  // null: no keep-mask. Same indexing with keep_s*.
    const unsigned char* kinds; // null: no block mask. 0 empty, 1 partial, 2 full, per (bb, bh, query block, key block).
    const int* slots;           // per block of [B, H, qblocks, kblocks]: slot of its host-evaluated pairs, or -1
    const unsigned char* pairs; // q_block * k_block bytes per slot
    i64 band_lo, band_hi;       // key - query must lie in [band_lo, band_hi]
    i64 bias_sb, bias_sh, bias_sq;
    i64 keep_sb, keep_sh, keep_sq;
    i64 q_sb, q_sh, q_sr;       // element (b, h, i, c) of Q at b*q_sb + h*q_sh + i*q_sr + c; likewise K, V, O
    i64 k_sb, k_sh, k_sr;
    i64 v_sb, v_sh, v_sr;
    i64 o_sb, o_sh, o_sr;
    i64 lse_sb, lse_sh, lse_sq; // LSE (b, h, i) at b*lse_sb + h*lse_sh + i*lse_sq
    int batch, heads, kv_heads, lq, lk;
    int block_batch, block_heads, q_blocks, k_blocks, q_block, k_block;
    float scale;
    int dropout;                // 0: no dropout. Else the probabilities are multiplied by the engine's Philox mask:
    unsigned dropout_key0, dropout_key1, dropout_offset, dropout_threshold; // (AttentionEngine.Kernels.Dropout.DropoutStream)
    float dropout_scale;        // 1 / (1 - p), what a kept probability is multiplied by
    int pad_;
};

// The host's mirror (engine/Backends/Cuda/FlashParams.cs) is tested against this size and the offsets band_lo 80,
// q_sb 144, batch 264, scale 308, dropout 312 that these field types give.
static_assert(sizeof(FlashParams) == 344, "FlashParams layout changed: update the host mirror");

namespace flash
{
constexpr int D = AE_HEAD_DIM;
constexpr int Warps = 4;
constexpr int Threads = Warps * 32;
constexpr int Br = Warps * 16;            // query rows per block
#if AE_F32
constexpr int DefaultBc = D <= 96 ? 64 : D <= 128 ? 32 : 16; // keys per tile: two fp32 K/V buffers fit an A100's 163 KiB
constexpr int QkPitch = D + 4; // tf32 fragments read row g, column t of Q and K: a pitch of 4 (mod 32) words spreads the banks
constexpr int VPitch = D + 8;  // and row t, column g of V: 8 (mod 32)
#else
constexpr int DefaultBc = D <= 128 ? 64 : 32; // keys per tile (smaller at D = 256 to fit two K/V buffers)
constexpr int QkPitch = D + 8;            // shared row pitch in elements: +16 bytes spreads ldmatrix rows over banks
constexpr int VPitch = D + 8;
#endif
#ifdef AE_KEYS_PER_TILE
constexpr int Bc = AE_KEYS_PER_TILE;
#else
constexpr int Bc = DefaultBc;
#endif
// An mma's k is 8 keys (tf32) or 16 (f16/bf16) in P V; mask_scores keeps two bits per 8 keys in one u32, and the
// tf32 P V gathers a tile's keys into two u32 (keys_lo, keys_hi): 64 keys at most.
static_assert(Bc % (AE_F32 ? 8 : 16) == 0 && Bc >= (AE_F32 ? 8 : 16) && Bc <= 64, "keys per tile: a multiple of the mma's k, at most 64");
static_assert(Bc <= DefaultBc, "AE_KEYS_PER_TILE only shrinks the tile");
constexpr float Log2e = 1.4426950408889634f;
constexpr float PassOneScale = 1.f / 4294967296.f; // 2^-32: 2^31 keys · 2^128 · 2^-32 stays inside the float range

static_assert(D % 32 == 0, "head dimension must be a multiple of 32");

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }


__device__ __forceinline__ bool non_finite(float x) { return (__float_as_uint(x) & 0x7f800000u) == 0x7f800000u; }

// Exponent bits of both halves of a register of two storage elements; a half whose exponent is all ones is NaN or inf.
#if AE_BF16
constexpr u32 HalfExponents = 0x7f807f80u;
#else
constexpr u32 HalfExponents = 0x7c007c00u;
#endif

// The halves of x (two storage elements) that hold NaN or infinity, as a 0xffff mask per half.
__device__ __forceinline__ u32 non_finite_halves(u32 x)
{
    u32 e = x & HalfExponents;
    return ((e & 0xffffu) == (HalfExponents & 0xffffu) ? 0x0000ffffu : 0u) | ((e >> 16) == (HalfExponents >> 16) ? 0xffff0000u : 0u);
}

// A non-finite storage element as a float: its sign and NaN-ness survive (finite elements are never asked for).
__device__ __forceinline__ float non_finite_value(u32 bits16)
{
#if AE_BF16
    return __int_as_float(bits16 << 16);
#else
    u32 sign = (bits16 & 0x8000u) << 16, mantissa = bits16 & 0x3ffu;
    return __int_as_float(sign | 0x7f800000u | (mantissa << 13));
#endif
}

// Both bf16 halves times 2^-32 (pass 1): the exponent field lowered by 32, values below 2^-94 flushed to signed zero
// (negligible next to the values that send a block to pass 1). fp16 never runs pass 1.
__device__ __forceinline__ u32 scale_halves(u32 x)
{
    u32 result = 0;
    #pragma unroll
    for (int half = 0; half < 2; half++)
    {
        u32 h = (x >> (16 * half)) & 0xffffu, exponent = (h >> 7) & 0xffu;
        u32 scaled = exponent > 32u ? h - (32u << 7) : h & 0x8000u;
        result |= scaled << (16 * half);
    }
    return result;
}

// OR of a flag over the warp (a butterfly of shuffles, so every lane ends with the same answer).
__device__ __forceinline__ u32 warp_any(u32 flag)
{
    #pragma unroll
    for (int m = 16; m >= 1; m /= 2) flag |= __shfl_xor_sync(0xffffffffu, flag, m);
    return flag;
}

#ifdef AE_EMULATE
using namespace ae_emu::ptx;
#else
__device__ __forceinline__ u32 shared_address(const void* p) { return (u32)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared without a register round trip; src_bytes = 0 writes zeros (rows past the end).
__device__ __forceinline__ void copy16_async(void* shared, const void* global, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(shared_address(shared)), "l"(global), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void commit_async() { asm volatile("cp.async.commit_group;"); }
template <int Pending> __device__ __forceinline__ void wait_async() { asm volatile("cp.async.wait_group %0;" :: "n"(Pending)); }

// Four 8x8 b16 matrices from shared memory; lane L gives the address of row L % 8 of matrix L / 8.
__device__ __forceinline__ void load_matrix_x4(u32 (&r)[4], const u16* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(p)));
}
__device__ __forceinline__ void load_matrix_x4_transposed(u32 (&r)[4], const u16* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(p)));
}

// d += a (16x16, row) * b (16x8, col), fp32 accumulators.
__device__ __forceinline__ void mma(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1)
{
#if AE_BF16
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#endif
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to nearest even into one register of two 16-bit elements (lo in the low half).
__device__ __forceinline__ u32 pack(float lo, float hi)
{
    u32 r;
#if AE_BF16
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
    return r;
}

// d += a (16x8, row) * b (8x8, col) on tf32 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_tf32(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1)
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// NaN-propagating min and max (one FMNMX each): the engine's range clamp without the compare-and-select pairs.
__device__ __forceinline__ float min_nan(float a, float b)
{
    float r;
    asm("min.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}
__device__ __forceinline__ float max_nan(float a, float b)
{
    float r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

// 2^x in one MUFU.EX2 (exp2f adds a range fix-up for results below 2^-126 and costs four instructions): within 2 ulps
// of the correctly rounded power, -inf -> 0, subnormal results flushed to zero (a probability below 2^-126 of the
// row's largest). The emulator answers 2 ulps off on purpose.
__device__ __forceinline__ float ex2_approx_ftz(float x)
{
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// fp32 to tf32 (10-bit mantissa), rounded to nearest with ties away from zero.
__device__ __forceinline__ u32 to_tf32(float x)
{
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}
#endif

// The engine's fp32 range rule (ScoreSaturation): clamp to [-FLT_MAX, FLT_MAX]; NaN stays NaN.
__device__ __forceinline__ float saturate(float x)
{
    const float most = __int_as_float(0x7f7fffffu);
    return min_nan(max_nan(x, -most), most);
}

// Rows [row0, row0 + Rows) of a [*, D] matrix (row stride `stride` elements) into shared memory (pitch Pitch), zeros
// past `rows`.
template <int Rows, int Pitch>
__device__ __forceinline__ void stage_rows_async(elem* shared, const elem* matrix, i64 stride, int row0, int rows)
{
    constexpr int PerChunk = 16 / sizeof(elem), Chunks = D / PerChunk;
    for (int c = threadIdx.x; c < Rows * Chunks; c += Threads)
    {
        int r = c / Chunks, col = c % Chunks * PerChunk;
        bool valid = row0 + r < rows;
        copy16_async(shared + r * Pitch + col, valid ? matrix + (row0 + r) * stride + col : matrix, valid);
    }
}

// The block grid's index formula, the C++ twin of BlockGrid.Index in the C# kernels: blocks laid out as
// [grid_batch | 1][grid_heads | 1][query blocks][key blocks], batch and head clamped to 0 where the grid has one.
// The kinds' grid is the block mask's (block_batch, block_heads); the slots' grid is the call's (batch, heads).
__device__ __forceinline__ i64 block_index(const FlashParams& p, int grid_batch, int grid_heads, int b, int h, int qb, int kb)
{
    return (((i64)(grid_batch == 1 ? 0 : b) * grid_heads + (grid_heads == 1 ? 0 : h)) * p.q_blocks + qb) * p.k_blocks + kb;
}

// True when some block of the block mask over rows [i0, i1) x keys [j0, j1) is not empty (always without one).
__device__ __forceinline__ bool tile_has_blocks(const FlashParams& p, int b, int h, int i0, int i1, int j0, int j1)
{
    if (!p.kinds) return true;
    for (int qb = i0 / p.q_block; qb <= (i1 - 1) / p.q_block; qb++)
        for (int kb = j0 / p.k_block; kb <= (j1 - 1) / p.k_block; kb++)
            if (p.kinds[block_index(p, p.block_batch, p.block_heads, b, h, qb, kb)] != 0) return true;
    return false;
}

// The next tile (index) at or after t whose keys some row of this block may see, or `end`.
__device__ __forceinline__ int next_tile(const FlashParams& p, int b, int h, int i0, int i1, int t, int end)
{
    for (; t < end; t++)
    {
        int j0 = t * Bc, j1 = min(p.lk, j0 + Bc);
        if (tile_has_blocks(p, b, h, i0, i1, j0, j1)) return t;
    }
    return end;
}

// Visibility of one pair by every rule: bounds, band, keep-mask, block mask (partial blocks: the host's pairs).
__device__ __forceinline__ bool visible(const FlashParams& p, int b, int h, int i, int j)
{
    if (i >= p.lq || j >= p.lk) return false;
    i64 offset = (i64)j - i;
    if (offset < p.band_lo || offset > p.band_hi) return false;
    if (p.keep && !p.keep[b * p.keep_sb + h * p.keep_sh + i * p.keep_sq + j]) return false;
    if (p.kinds)
    {
        int qb = i / p.q_block, kb = j / p.k_block;
        unsigned char kind = p.kinds[block_index(p, p.block_batch, p.block_heads, b, h, qb, kb)];
        if (kind == 0) return false;
        if (kind == 1)
        {
            int slot = p.slots[block_index(p, p.batch, p.heads, b, h, qb, kb)];
            if (slot < 0) return false;
            return p.pairs[(i64)slot * p.q_block * p.k_block + (i64)(i % p.q_block) * p.k_block + j % p.k_block] != 0;
        }
    }
    return true;
}

// Scaled scores of one warp's 16 x Bc tile, saturated to the float range and masked to -inf; Plain skips the
// per-pair rules (for tiles the band covers entirely when the call has no other mask), at compile time. Returns the keys some row of the warp sees, two bits per 8-key
// block n (bit 2n: key n*8 + 2t, bit 2n + 1: key n*8 + 2t + 1, t = lane % 4): accumulate_values zeroes the value rows
// of the others, because a tensor core computes 0 * inf = NaN and a hidden key's value may hold anything.
// KeyRows (the backward's dK/dV kernel, which computes S^T = K Q^T): the tile's rows are keys (row_lo) and its columns
// queries (col0), and the bits returned are the queries some key of the warp is seen by.
template <bool Plain, bool KeyRows = false>
__device__ __forceinline__ u32 mask_scores(float (&s)[Bc / 8][4], const FlashParams& p, int b, int h, int row_lo, int col0)
{
    constexpr bool plain = Plain;
    int lane = threadIdx.x % 32;
    u32 seen = 0;
    #pragma unroll
    for (int n = 0; n < Bc / 8; n++)
        #pragma unroll
        for (int e = 0; e < 4; e++)
        {
            int r = row_lo + (e / 2) * 8, c = col0 + n * 8 + (lane % 4) * 2 + e % 2;
            int i = KeyRows ? c : r, j = KeyRows ? r : c;
            float x = saturate(s[n][e] * p.scale);
            if (!plain)
            {
                if (!visible(p, b, h, i, j)) x = neg_inf();
                else if (p.bias)
                {
                    // A -inf bias hides the key whatever its score holds (NaN from its K included); sums saturate.
                    float bias = p.bias[b * p.bias_sb + h * p.bias_sh + i * p.bias_sq + j];
                    x = bias == neg_inf() ? neg_inf() : saturate(x + bias);
                }
                if (x != neg_inf()) seen |= 1u << (n * 2 + e % 2);
            }
            s[n][e] = x;
        }
    if (plain) return 0xffffffffu;
    // Lanes 4g + t (g = 0..7) hold the same keys for the warp's 16 rows.
    seen |= __shfl_xor_sync(0xffffffffu, seen, 4);
    seen |= __shfl_xor_sync(0xffffffffu, seen, 8);
    return seen | __shfl_xor_sync(0xffffffffu, seen, 16);
}

// The halves of a B-fragment register (keys 2t and 2t + 1 of 8-key block n) that belong to keys the warp sees.
__device__ __forceinline__ u32 seen_halves(u32 seen, int n)
{
    return ((seen >> (2 * n)) & 1u ? 0x0000ffffu : 0u) | ((seen >> (2 * n + 1)) & 1u ? 0xffff0000u : 0u);
}

// Maximum over the four lanes that share a row (lanes 4g .. 4g + 3).
__device__ __forceinline__ float quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Online softmax for the thread's two rows (half 0: row g, half 1: row g + 8): new maxima, S -> P in place, O and
// the partial row sums rescaled.
__device__ __forceinline__ void online_softmax(float (&s)[Bc / 8][4], float (&o)[D / 8][4], float (&row_max)[2], float (&row_sum)[2])
{
    #pragma unroll
    for (int half = 0; half < 2; half++)
    {
        float m = row_max[half];
        #pragma unroll
        for (int n = 0; n < Bc / 8; n++) m = fmaxf(m, fmaxf(s[n][half * 2], s[n][half * 2 + 1]));
        m = quad_max(m);
        // Subtracting a finite base: a hidden score (-inf) then gives 2^-inf = 0 even in a row that has seen no key yet
        // (m = -inf), without a select per score.
        float base = m == neg_inf() ? 0.f : m;
        // An unchanged maximum rescales by exactly 1: ex2.approx(0) need not be 1 (the ISA allows 2 ulps), and a row
        // whose maximum stops moving would otherwise shrink its O and l by that error once per tile, each rounded
        // apart (11 float ulps over a 961-key row with one visible key, beyond the rule, under the emulator's model).
        float rescale = row_max[half] == base ? 1.f : ex2_approx_ftz((row_max[half] - base) * Log2e);
        float sum = 0.f;
        #pragma unroll
        for (int n = 0; n < Bc / 8; n++)
            #pragma unroll
            for (int e = half * 2; e < half * 2 + 2; e++)
            {
                s[n][e] = ex2_approx_ftz((s[n][e] - base) * Log2e);
                sum += s[n][e];
            }
        row_sum[half] = row_sum[half] * rescale + sum;
        row_max[half] = m;
        #pragma unroll
        for (int n = 0; n < D / 8; n++) { o[n][half * 2] *= rescale; o[n][half * 2 + 1] *= rescale; }
    }
}

// Philox4x32-10 word `index` of counter (c0, c1, c2, c3) under key (k0, k1): the engine's one dropout generator
// (kernels/Dropout/Philox4x32.cs), bit for bit.
__device__ __forceinline__ u32 philox_word(u32 c0, u32 c1, u32 c2, u32 c3, u32 k0, u32 k1, int index)
{
    #pragma unroll
    for (int round = 0; round < 10; round++)
    {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        unsigned long long p0 = (unsigned long long)0xD2511F53u * c0, p1 = (unsigned long long)0xCD9E8D57u * c2;
        u32 n0 = (u32)(p1 >> 32) ^ c1 ^ k0, n2 = (u32)(p0 >> 32) ^ c3 ^ k1;
        c1 = (u32)p1;
        c3 = (u32)p0;
        c0 = n0;
        c2 = n2;
    }
    return index == 0 ? c0 : index == 1 ? c1 : index == 2 ? c2 : c3;
}

// Key j of query i in row stream b*H + h keeps word (j % 4) of counter (j / 4, i, b*H + h, offset) when it is at
// least the threshold: the factor a kept probability is multiplied by, or 0.
__device__ __forceinline__ float dropout_factor(const FlashParams& p, int b, int h, int i, int j)
{
    u32 stream = (u32)b * (u32)p.heads + (u32)h;
    u32 word = philox_word((u32)j >> 2, (u32)i, stream, p.dropout_offset, p.dropout_key0, p.dropout_key1, j & 3);
    return word >= p.dropout_threshold ? p.dropout_scale : 0.f;
}

// Dropout on the thread's probabilities, after the row sums took them. A dropped probability is 0, so
// accumulate_values' guard (always on with dropout) never lets its value reach the row, whatever it holds.
__device__ __forceinline__ void apply_dropout(float (&s)[Bc / 8][4], const FlashParams& p, int b, int h, int row_lo, int j0)
{
    int lane = threadIdx.x % 32;
    #pragma unroll
    for (int n = 0; n < Bc / 8; n++)
        #pragma unroll
        for (int e = 0; e < 4; e++)
        {
            int i = row_lo + (e / 2) * 8, j = j0 + n * 8 + (lane % 4) * 2 + e % 2;
            if (s[n][e] == 0.f) continue;
            s[n][e] *= dropout_factor(p, b, h, i, j);
        }
}

// The element a shared value row holds at `column`, when it is NaN or infinity (finite: false).
__device__ __forceinline__ bool non_finite_element(const elem* row, int column, float& value)
{
#if AE_F32
    value = row[column];
    return non_finite(value);
#else
    u32 bits = row[column];
    value = non_finite_value(bits);
    return (bits & (HalfExponents & 0xffffu)) == (HalfExponents & 0xffffu);
#endif
}

// After an mma on values whose NaN and infinities were zeroed (so that a row hiding a key multiplies its P = 0 by 0,
// not by NaN): rows that do see such a key (P != 0) get P times the raw element added back, so garbage a row sees is
// never hidden. Rare (a tile whose visible keys hold non-finite values), so keys go one at a time; P of key k for the
// thread's rows g and g + 8 comes from the quad lane that holds it.
template <int Pitch>
__device__ __forceinline__ void add_back_non_finite(float (&o)[D / 8][4], const float (&s)[Bc / 8][4], const elem* vs)
{
    int lane = threadIdx.x % 32, t = lane % 4;
    #pragma unroll 1
    for (int k = 0; k < Bc; k++)
    {
        int block = k / 8, source = (lane & ~3) | (k % 8) / 2;
        bool odd = (k & 1) != 0;
        float mine_lo = 0.f, mine_hi = 0.f; // select without indexing registers at run time
        #pragma unroll
        for (int n = 0; n < Bc / 8; n++)
            if (n == block) { mine_lo = odd ? s[n][1] : s[n][0]; mine_hi = odd ? s[n][3] : s[n][2]; }
        float p_lo = __shfl_sync(0xffffffffu, mine_lo, source), p_hi = __shfl_sync(0xffffffffu, mine_hi, source);
        const elem* row = vs + k * Pitch;
        #pragma unroll
        for (int c = 0; c < D / 8; c++)
            #pragma unroll
            for (int e = 0; e < 2; e++)
            {
                float v;
                if (!non_finite_element(row, c * 8 + 2 * t + e, v)) continue;
                if (p_lo != 0.f) o[c][e] += p_lo * v;
                if (p_hi != 0.f) o[c][2 + e] += p_hi * v;
            }
    }
}

#if AE_F32
// x = big + small, both tf32 (the 3xTF32 split).
__device__ __forceinline__ void split_tf32(float x, u32& big, u32& small)
{
    big = to_tf32(x);
    small = to_tf32(x - __int_as_float(big));
}

// d += a b for one 8-deep slice, as small*big + big*small + big*big summed by three mma into zeroed registers and then
// added to d with one rounded fp32 add. Tensor cores align an mma's terms to the largest exponent and truncate (toward
// zero) to fp32: three mma straight into a long row's running sum lost up to an ulp of that sum each, always in the
// same direction, and on an H200 the fp32 outputs of 500-700-key rows missed the tolerance rule by 1.1-2x (the
// emulator's truncating model showed the same). Summed apart, the truncations are ulps of 8 products, and the running
// sum takes one correctly rounded (unbiased) add per slice. Used for P V, whose sums run over a whole row's keys; the
// scores' sums run over D only, and summing them apart barely moved the errors (2.31 to 2.07e-6 under the truncating model).
__device__ __forceinline__ void accumulate_3xtf32(float (&d)[4], const u32 (&a_big)[4], const u32 (&a_small)[4], const u32 (&b_big)[2],
    const u32 (&b_small)[2])
{
    float slice[4] = { 0.f, 0.f, 0.f, 0.f };
    mma_tf32(slice, a_small, b_big[0], b_big[1]);
    mma_tf32(slice, a_big, b_small[0], b_small[1]);
    mma_tf32(slice, a_big, b_big[0], b_big[1]);
    // ptxas overlaps several slices' chains, each with these four registers: the fp32 variants now reach the
    // 255-register cap and spill (CudaKernelCompileTests lists them). Accuracy first; the cost waits for a GPU.
    #pragma unroll
    for (int e = 0; e < 4; e++) d[e] += slice[e];
}

// fp32 reads Q from shared memory per tile (its split fragments would take twice the registers).
struct QFragments { };
__device__ __forceinline__ void load_q(QFragments&, const elem*) { }

// S = Q_w K^T for the warp's 16 rows and the tile's Bc keys: per 8-wide slice of D, A = Q (rows g, g + 8; columns t,
// t + 4) and B = K^T (keys n*8 + g; the same columns), each product as small*big + big*small + big*big.
// APitch, BPitch: the row pitches of the row operand (qs) and of the key tile (ks) in shared memory.
template <bool Held = false, int APitch = QkPitch, int BPitch = QkPitch>
__device__ __forceinline__ void score_tile(float (&s)[Bc / 8][4], const QFragments&, const elem* qs, const elem* ks)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    #pragma unroll
    for (int n = 0; n < Bc / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
    #pragma unroll 2
    for (int kk = 0; kk < D / 8; kk++)
    {
        const float* q_lo = qs + (warp * 16 + g) * APitch + kk * 8;
        const float* q_hi = q_lo + 8 * APitch;
        u32 a_big[4], a_small[4];
        split_tf32(q_lo[t], a_big[0], a_small[0]);
        split_tf32(q_hi[t], a_big[1], a_small[1]);
        split_tf32(q_lo[t + 4], a_big[2], a_small[2]);
        split_tf32(q_hi[t + 4], a_big[3], a_small[3]);
        #pragma unroll
        for (int n = 0; n < Bc / 8; n++)
        {
            const float* key = ks + (n * 8 + g) * BPitch + kk * 8;
            u32 b_big[2], b_small[2];
            split_tf32(key[t], b_big[0], b_small[0]);
            split_tf32(key[t + 4], b_big[1], b_small[1]);
            mma_tf32(s[n], a_small, b_big[0], b_big[1]);
            mma_tf32(s[n], a_big, b_small[0], b_small[1]);
            mma_tf32(s[n], a_big, b_big[0], b_big[1]);
        }
    }
}

// O += P V on tf32 pairs. P leaves the accumulators in the C layout (row g: keys 2t, 2t + 1) and enters the A layout
// (row g: keys t, t + 4) through quad shuffles; value rows of keys no row of the warp sees are zeroed (see mask_scores).
template <bool Plain, int Pitch = VPitch>
__device__ __forceinline__ void accumulate_values(float (&o)[D / 8][4], const float (&s)[Bc / 8][4], const elem* vs, u32 seen, bool guard,
    bool scaled)
{
    if (Plain) { guard = false; scaled = false; }
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    u32 bad = 0;
    // One bit per key of the tile: each lane's two bits per 8-key block, gathered over its quad.
    u32 keys_lo = 0, keys_hi = 0;
    #pragma unroll
    for (int n = 0; n < Bc / 8; n++)
    {
        u32 bits = ((seen >> (2 * n)) & 3u) << ((n % 4) * 8 + 2 * t);
        if (n < 4) keys_lo |= bits; else keys_hi |= bits;
    }
    keys_lo |= __shfl_xor_sync(0xffffffffu, keys_lo, 1);
    keys_lo |= __shfl_xor_sync(0xffffffffu, keys_lo, 2);
    keys_hi |= __shfl_xor_sync(0xffffffffu, keys_hi, 1);
    keys_hi |= __shfl_xor_sync(0xffffffffu, keys_hi, 2);
    int from_lo = (lane & ~3) | (t >> 1), from_hi = (lane & ~3) | ((t + 4) >> 1); // lanes holding keys t and t + 4
    bool odd = (t & 1) != 0;
    #pragma unroll
    for (int n = 0; n < Bc / 8; n++)
    {
        float c0 = __shfl_sync(0xffffffffu, s[n][0], from_lo), c1 = __shfl_sync(0xffffffffu, s[n][1], from_lo);
        float c2 = __shfl_sync(0xffffffffu, s[n][2], from_lo), c3 = __shfl_sync(0xffffffffu, s[n][3], from_lo);
        float d0 = __shfl_sync(0xffffffffu, s[n][0], from_hi), d1 = __shfl_sync(0xffffffffu, s[n][1], from_hi);
        float d2 = __shfl_sync(0xffffffffu, s[n][2], from_hi), d3 = __shfl_sync(0xffffffffu, s[n][3], from_hi);
        u32 a_big[4], a_small[4];
        split_tf32(odd ? c1 : c0, a_big[0], a_small[0]); // row g, key t
        split_tf32(odd ? c3 : c2, a_big[1], a_small[1]); // row g + 8, key t
        split_tf32(odd ? d1 : d0, a_big[2], a_small[2]); // row g, key t + 4
        split_tf32(odd ? d3 : d2, a_big[3], a_small[3]); // row g + 8, key t + 4
        u32 block_keys = n < 4 ? keys_lo >> (n * 8) : keys_hi >> ((n - 4) * 8);
        bool see_t = (block_keys >> t) & 1u, see_t4 = (block_keys >> (t + 4)) & 1u;
        const float* v_t = vs + (n * 8 + t) * Pitch + g;
        const float* v_t4 = v_t + 4 * Pitch;
        #pragma unroll
        for (int c = 0; c < D / 8; c++)
        {
            float x_t = see_t ? v_t[c * 8] : 0.f, x_t4 = see_t4 ? v_t4[c * 8] : 0.f;
            if (scaled) { x_t *= PassOneScale; x_t4 *= PassOneScale; }
            if (guard)
            {
                // Mixed tiles: a NaN or infinite value is zeroed here and added back below for the rows that see it.
                bool nf_t = non_finite(x_t), nf_t4 = non_finite(x_t4);
                bad |= (u32)(nf_t | nf_t4);
                x_t = nf_t ? 0.f : x_t;
                x_t4 = nf_t4 ? 0.f : x_t4;
            }
            u32 b_big[2], b_small[2];
            split_tf32(x_t, b_big[0], b_small[0]);
            split_tf32(x_t4, b_big[1], b_small[1]);
            accumulate_3xtf32(o[c], a_big, a_small, b_big, b_small);
        }
    }
    if (guard && warp_any(bad)) add_back_non_finite<Pitch>(o, s, vs);
}
#else
// The warp's Q rows as A fragments, loaded from shared memory once per block, or per tile. Held in registers at D = 96
// and 128 (24-32 registers that save a fifth of the tile's ldmatrix: 3-5% faster at D = 128 on an H200, A/B in
// bench/RESULTS.md); per tile at D <= 64 (as fast or faster there: the registers went to ptxas's scheduling, and
// causal fp16 D = 64 ran 9% faster) and at D = 256, where the registers are not there to spare. D = 96 follows
// D = 128 untimed.
constexpr bool QInRegisters = D > 64 && D <= 128;
struct QFragments { u32 a[QInRegisters ? D / 16 : 1][4]; };

template <int Pitch = QkPitch>
__device__ __forceinline__ void load_q_fragment(u32 (&a)[4], const elem* qs, int kk)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    load_matrix_x4(a, qs + (warp * 16 + lane % 16) * Pitch + kk * 16 + lane / 16 * 8);
}

__device__ __forceinline__ void load_q(QFragments& q, const elem* qs)
{
    #pragma unroll // no fragments to load where Q stays in shared memory
    for (int kk = 0; kk < (QInRegisters ? D / 16 : 0); kk++) load_q_fragment(q.a[kk], qs, kk);
}

// S = Q_w K^T for the warp's 16 rows and the tile's Bc keys. Held: the row operand's fragments are in q (loaded by
// load_q where QInRegisters), else read from qs per tile. APitch, BPitch: the shared row pitches of qs and ks.
template <bool Held = QInRegisters, int APitch = QkPitch, int BPitch = QkPitch>
__device__ __forceinline__ void score_tile(float (&s)[Bc / 8][4], const QFragments& q, const elem* qs, const elem* ks)
{
    int lane = threadIdx.x % 32;
    #pragma unroll
    for (int n = 0; n < Bc / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
    #pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
    {
        u32 a[4];
        if (Held && QInRegisters)
        {
            #pragma unroll
            for (int x = 0; x < 4; x++) a[x] = q.a[QInRegisters ? kk : 0][x];
        }
        else load_q_fragment<APitch>(a, qs, kk);
        #pragma unroll
        for (int n = 0; n < Bc / 16; n++)
        {
            u32 bfrag[4]; // keys n*16 .. +7 then +8 .. +15; d halves kk*16 + 0..7 and 8..15
            load_matrix_x4(bfrag, ks + (n * 16 + lane / 16 * 8 + lane % 8) * BPitch + kk * 16 + lane / 8 % 2 * 8);
            mma(s[2 * n], a, bfrag[0], bfrag[1]);
            mma(s[2 * n + 1], a, bfrag[2], bfrag[3]);
        }
    }
}

// O += P V: P from the score accumulators (C fragment layout = A fragment layout by pairs of 8-key blocks). Value
// rows of keys no row of the warp sees are zeroed in the fragments (see mask_scores). Plain: every key seen, no
// guard, no scale (known at compile time, so the fragments go to the mma untouched).
template <bool Plain, int Pitch = VPitch>
__device__ __forceinline__ void accumulate_values(float (&o)[D / 8][4], const float (&s)[Bc / 8][4], const elem* vs, u32 seen, bool guard,
    bool scaled)
{
    if (Plain) { guard = false; scaled = false; }
    int lane = threadIdx.x % 32;
    u32 bad = 0;
    #pragma unroll
    for (int kk = 0; kk < Bc / 16; kk++)
    {
        u32 a[4] = { pack(s[2 * kk][0], s[2 * kk][1]), pack(s[2 * kk][2], s[2 * kk][3]),
                     pack(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack(s[2 * kk + 1][2], s[2 * kk + 1][3]) };
        u32 keys_lo = seen_halves(seen, 2 * kk), keys_hi = seen_halves(seen, 2 * kk + 1);
        #pragma unroll
        for (int n = 0; n < D / 16; n++)
        {
            u32 bfrag[4]; // keys kk*16 + 0..15, value columns n*16 + 0..7 then 8..15
            load_matrix_x4_transposed(bfrag, vs + (kk * 16 + lane % 16) * Pitch + n * 16 + lane / 16 * 8);
            if (!Plain)
            {
                bfrag[0] &= keys_lo; bfrag[2] &= keys_lo; // keys kk*16 + 2t, +1
                bfrag[1] &= keys_hi; bfrag[3] &= keys_hi; // keys kk*16 + 8 + 2t, +1
            }
            if (guard)
            {
                // Mixed tiles: NaN and infinities of keys some row sees are zeroed here and added back below for
                // exactly the rows that see them (a row hiding the key must not get its P = 0 times NaN).
                #pragma unroll
                for (int x = 0; x < 4; x++)
                {
                    u32 nf = non_finite_halves(bfrag[x]);
                    bad |= nf;
                    bfrag[x] &= ~nf;
                    if (scaled) bfrag[x] = scale_halves(bfrag[x]);
                }
            }
            mma(o[2 * n], a, bfrag[0], bfrag[1]);
            mma(o[2 * n + 1], a, bfrag[2], bfrag[3]);
        }
    }
    if (guard && warp_any(bad)) add_back_non_finite<Pitch>(o, s, vs);
}

#endif

// O / l into the output rows (zeros and LSE = -inf for rows that saw no key); `unscale` undoes pass 1's scale.
__device__ __forceinline__ void store_rows(const FlashParams& p, int b, int h, int row_lo, float (&o)[D / 8][4], float (&row_max)[2], float (&row_sum)[2],
    float unscale, const bool (&write)[2])
{
    int lane = threadIdx.x % 32;
    #pragma unroll
    for (int half = 0; half < 2; half++)
    {
        int i = row_lo + half * 8;
        float sum = quad_sum(row_sum[half]);
        if (i >= p.lq || !write[half]) continue;
        bool empty = sum == 0.f;
        float inverse = empty ? 0.f : 1.f / sum;
        elem* row = p.o + b * p.o_sb + h * p.o_sh + i * p.o_sr, *out = row + (lane % 4) * 2;
        float* lse = p.lse ? p.lse + b * p.lse_sb + h * p.lse_sh + i * p.lse_sq : nullptr;
#ifdef AE_EMULATE
        // Plain stores are not intercepted: the emulator checks these host-given addresses before they are written.
        if (!ae_emu::global_access_valid(row, D * sizeof(elem), "output row store")
            || (lse && !ae_emu::global_access_valid(lse, sizeof(float), "LSE store"))) return;
#endif
        #pragma unroll
        for (int n = 0; n < D / 8; n++)
        {
#if AE_F32
            out[n * 8] = o[n][half * 2] * inverse * unscale;
            out[n * 8 + 1] = o[n][half * 2 + 1] * inverse * unscale;
#else
            *(u32*)(out + n * 8) = pack(o[n][half * 2] * inverse * unscale, o[n][half * 2 + 1] * inverse * unscale);
#endif
        }
        if (lane % 4 == 0 && lse) *lse = empty ? neg_inf() : row_max[half] + logf(sum);
    }
}
} // namespace flash

// The smaller tiles run on 99 KiB devices, whose 100 KiB per multiprocessor hold one block of these variants anyway:
// promising ptxas one block per multiprocessor lets it take the registers it needs instead of spilling (fp32 D = 96
// spilled 20 bytes at sm_86 without it).
#ifdef AE_KEYS_PER_TILE
#define AE_LAUNCH_BOUNDS __launch_bounds__(flash::Threads, 1)
#else
#define AE_LAUNCH_BOUNDS __launch_bounds__(flash::Threads)
#endif

#ifndef AE_BACKWARD // flash_backward.cu includes this file for the helpers above and has its own entry points
extern "C" __global__ void AE_LAUNCH_BOUNDS AE_ENTRY(const FlashParams p)
{
    using namespace flash;
#ifdef AE_EMULATE
    elem* shared = (elem*)ae_emu::dynamic_shared();
#else
    extern __shared__ __align__(16) elem shared[];
#endif
    elem* qs = shared;                  // [Br][QkPitch]
    elem* ks = qs + Br * QkPitch;       // [2][Bc][QkPitch]
    elem* vs = ks + 2 * Bc * QkPitch;   // [2][Bc][VPitch]

    int bh = blockIdx.x, b = bh / p.heads, h = bh % p.heads, kvh = h / (p.heads / p.kv_heads);
    int i0 = blockIdx.y * Br, i1 = min(p.lq, i0 + Br);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int row_lo = i0 + warp * 16 + lane / 4;
    const elem* q_head = p.q + b * p.q_sb + h * p.q_sh;
    const elem* k_head = p.k + b * p.k_sb + kvh * p.k_sh;
    const elem* v_head = p.v + b * p.v_sb + kvh * p.v_sh;

    // Keys the band lets some row of this block see: [first, last].
    i64 first = max((i64)0, (i64)i0 + p.band_lo), last = min((i64)p.lk - 1, (i64)(i1 - 1) + p.band_hi);
    int t_begin = (int)(first / Bc), t_end = first > last ? t_begin : (int)(last / Bc) + 1;
    bool masks = p.bias || p.keep || p.kinds;

    float o[D / 8][4];
    float row_max[2], row_sum[2];
    QFragments q;
    bool q_loaded = false; // at the first tile, once Q has landed
    stage_rows_async<Br, QkPitch>(qs, q_head, p.q_sr, i0, p.lq);
    commit_async();

    // Pass 0 is the kernel. Pass 1 runs only in a block whose output came out non-finite, and only where values can
    // reach the float range (bf16, fp32): every tile guarded, and V entering the value mma at 2^-32 (exact for every
    // value above 2^-94: a power of two; P and the sum l are not scaled, so a tiny P times a huge value still counts)
    // so that Σ p·v over values near the range's edge cannot overflow although their average cannot; store_rows undoes
    // the scale. Only the rows that came out non-finite take pass 1's result; the others keep pass 0's, bit for bit.
    // fp16 values stay below 65504, so one pass suffices there.
    constexpr int Passes = AE_BF16 || AE_F32 ? 2 : 1;
    int pass = 0;
    bool redo[2] = { true, true }; // the thread's rows the last pass writes (after pass 0: all of them)
    for (;; pass++)
    {
        bool scaled = pass == 1;
        #pragma unroll
        for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
        row_max[0] = row_max[1] = neg_inf();
        row_sum[0] = row_sum[1] = 0.f;

        int tile = next_tile(p, b, h, i0, i1, t_begin, t_end), buffer = 0;
        if (tile < t_end)
        {
            stage_rows_async<Bc, QkPitch>(ks, k_head, p.k_sr, tile * Bc, p.lk);
            stage_rows_async<Bc, VPitch>(vs, v_head, p.v_sr, tile * Bc, p.lk);
        }
        commit_async();

        while (tile < t_end)
        {
            int next = next_tile(p, b, h, i0, i1, tile + 1, t_end);
            if (next < t_end)
            {
                stage_rows_async<Bc, QkPitch>(ks + (buffer ^ 1) * Bc * QkPitch, k_head, p.k_sr, next * Bc, p.lk);
                stage_rows_async<Bc, VPitch>(vs + (buffer ^ 1) * Bc * VPitch, v_head, p.v_sr, next * Bc, p.lk);
                commit_async();
                wait_async<1>();
            }
            else
            {
                wait_async<0>();
            }
            __syncthreads();

            if (!q_loaded) { load_q(q, qs); q_loaded = true; }
            int j0 = tile * Bc;
            // The band holds every pair of the tile and nothing else masks, guards or scales: no per-pair work, and
            // a body compiled without it.
            bool plain = !masks && j0 + Bc <= p.lk && i1 - i0 == Br
                && (i64)j0 - (i1 - 1) >= p.band_lo && (i64)(j0 + Bc - 1) - i0 <= p.band_hi;
            const elem* kt = ks + buffer * Bc * QkPitch, *vt = vs + buffer * Bc * VPitch;
            float s[Bc / 8][4];
            if (plain && !scaled && !p.dropout)
            {
                score_tile(s, q, qs, kt);
                mask_scores<true>(s, p, b, h, row_lo, j0);
                online_softmax(s, o, row_max, row_sum);
                accumulate_values<true>(o, s, vt, 0xffffffffu, false, false);
            }
            else
            {
                score_tile(s, q, qs, kt);
                u32 seen = plain ? mask_scores<true>(s, p, b, h, row_lo, j0) : mask_scores<false>(s, p, b, h, row_lo, j0);
                online_softmax(s, o, row_max, row_sum);
                if (p.dropout) apply_dropout(s, p, b, h, row_lo, j0);
                accumulate_values<false>(o, s, vt, seen, !plain || scaled || p.dropout, scaled);
            }
            __syncthreads(); // the buffer is refilled two tiles on

            tile = next;
            buffer ^= 1;
        }
        wait_async<0>();
        if (pass + 1 >= Passes) break;
        // Which of the thread's rows came out non-finite (a row's columns spread over its quad), and does any row of
        // the block? One flag in the (now idle) K buffer.
        #pragma unroll
        for (int half = 0; half < 2; half++)
        {
            u32 row_bad = 0u;
            #pragma unroll
            for (int n = 0; n < D / 8; n++) row_bad |= (u32)(non_finite(o[n][half * 2]) | non_finite(o[n][half * 2 + 1]));
            row_bad |= __shfl_xor_sync(0xffffffffu, row_bad, 1);
            row_bad |= __shfl_xor_sync(0xffffffffu, row_bad, 2);
            redo[half] = row_bad != 0u && row_lo + half * 8 < p.lq;
        }
        u32* flag = (u32*)ks;
        if (threadIdx.x == 0) *flag = 0u;
        __syncthreads();
        if (redo[0] || redo[1]) *flag = 1u;
        __syncthreads();
        bool again = *flag != 0u;
        __syncthreads();
        if (!again)
        {
            redo[0] = redo[1] = true; // nothing to redo: pass 0 writes every row
            break;
        }
        // Rows that came out finite keep pass 0's result: pass 1 scales V for the whole warp, and a row's tiny terms
        // could fall into the subnormal range there because another row met a huge value (or garbage it sees).
        bool finite_rows[2] = { !redo[0], !redo[1] };
        store_rows(p, b, h, row_lo, o, row_max, row_sum, 1.f, finite_rows);
    }
    store_rows(p, b, h, row_lo, o, row_max, row_sum, pass == 1 ? 1.f / PassOneScale : 1.f, redo);
}

#ifdef AE_EMULATE
AE_EMULATED_KERNEL(AE_ENTRY, FlashParams, flash::Threads)
#endif
#endif // AE_BACKWARD
