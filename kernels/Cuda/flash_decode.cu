// Attention for few queries per head (decode: Lq <= 8) with the keys split across thread blocks (split-KV, as
// FlashDecoding does), then an exact merge of the splits' partial results by their LSE. A call with Lq = 1 and a long
// cache gives the flash kernel one 64-row tile per head, 63 rows of it idle, and one block per head for the whole
// cache; here a block takes the rows of one KV head's query group (GQA heads packed as rows, up to 8 rows) over one
// range of keys, so a few heads still fill the GPU.
//
// Self-contained (no CUDA headers), compiled by NVRTC at first use or by nvcc into a fatbin, once per element type:
//   -DAE_BF16=0|1, -DAE_F32=0|1 (fp16 when both are 0). K and V are contiguous per sequence, or paged (vLLM's
// layout: [pages, page size, KV heads, D] through a block table per sequence, each sequence with its own length). Entry points flash_decode_<f16|bf16|f32>(DecodeParams) and
// flash_decode_merge_<f16|bf16|f32>(DecodeParams). The CPU emulator (tests/CudaEmulator) compiles it with -DAE_EMULATE.
//
// flash_decode: grid (batch * kv_heads, splits, row chunks of 8), 128 threads, SharedBytes of dynamic shared memory. The block walks its keys 128 at a time:
// thread t scores key t of the step for every row (fp32 dot products over D), the block takes each row's maximum and
// sum through shared memory (online softmax), and each thread accumulates its (row, column) outputs over the step's
// keys, reading V rows coalesced. Only visible keys are read and multiplied: a hidden key's K and V may hold anything
// (NaN, Inf) and never reach a row. Writes O / l and the LSE of its keys per row to fp32 partials.
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
    int d, dv;                  // columns of Q and K; of V and O (each up to MaxColumns)
    int splits, keys_per_split; // split s takes keys [s * keys_per_split, (s + 1) * keys_per_split)
    int page_size;
    int band_from_end;          // 1: the band is relative to the end of each sequence's keys (bottom-right alignment)
    float scale;
};

static_assert(sizeof(DecodeParams) == 264, "DecodeParams layout changed: update the host mirror");

namespace decode
{
constexpr int Threads = 128;
constexpr int MaxRows = 8;        // query rows per block (a KV head's group x Lq, in chunks of 8)
constexpr int MaxColumns = 256;   // head dimension
constexpr int Step = Threads;     // keys per step: one per thread
constexpr int Outputs = MaxRows * MaxColumns / Threads; // (row, column) outputs per thread
constexpr float Log2e = 1.4426950408889634f;
constexpr float PassOneScale = 1.f / 4294967296.f; // 2^-32, as in flash_forward.cu

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }
__device__ __forceinline__ float saturate_score(float x)
{
    const float most = __int_as_float(0x7f7fffffu);
    return x > most ? most : x < -most ? -most : x;
}
__device__ __forceinline__ bool non_finite(float x) { return (__float_as_uint(x) & 0x7f800000u) == 0x7f800000u; }

__device__ __forceinline__ float load(const elem* p)
{
#if AE_F32
    return *p;
#elif AE_BF16
    return __int_as_float((u32)*p << 16);
#else
    // fp16 bits to float, exactly (subnormals, infinities and NaN included).
    u32 h = *p, sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0x1fu) return __int_as_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0)
    {
        float magnitude = (float)mantissa * 5.9604644775390625e-8f; // subnormal: mantissa * 2^-24, exact
        return sign ? -magnitude : magnitude;
    }
    return __int_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
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

struct Shared
{
    float q[MaxRows][MaxColumns];
    float p[MaxRows][Step];       // the step's scores, then probabilities
    float row_max[MaxRows], row_sum[MaxRows], rescale[MaxRows];
    int bad[MaxRows];             // after pass 0: the row's output came out non-finite
};
constexpr int SharedBytes = 12416; // CudaDecodeKernel.SharedBytes on the host
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
} // namespace decode

extern "C" __global__ void __launch_bounds__(decode::Threads) AE_DECODE_ENTRY(const DecodeParams p)
{
    using namespace decode;
#ifdef AE_EMULATE
    Shared& sh = *(Shared*)ae_emu::dynamic_shared();
#else
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    Shared& sh = *(Shared*)shared_bytes;
#endif
    int split = blockIdx.y, b = blockIdx.x / p.kv_heads, kvh = blockIdx.x % p.kv_heads;
    int group_rows = p.heads / p.kv_heads * p.lq, row0 = blockIdx.z * MaxRows, rows = min(MaxRows, group_rows - row0);
    int t = threadIdx.x;
    int lk = p.key_lengths ? p.key_lengths[b] : p.lk;
    int key_begin = split * p.keys_per_split, key_end = min(lk, key_begin + p.keys_per_split);
    i64 shift = p.band_from_end ? (i64)lk - p.lq : 0;
    const elem* k_head = p.k + (p.block_table ? 0 : b * p.k_sb) + kvh * p.k_sh;
    const elem* v_head = p.v + (p.block_table ? 0 : b * p.v_sb) + kvh * p.v_sh;

    for (int x = t; x < MaxRows * MaxColumns; x += Threads)
    {
        int r = x / MaxColumns, c = x % MaxColumns, h, i;
        float value = 0.f;
        if (r < rows && c < p.d)
        {
            row_of(p, kvh, row0 + r, h, i);
            value = load(p.q + b * p.q_sb + h * p.q_sh + i * p.q_sr + c);
        }
        sh.q[r][c] = value;
    }
    if (t < MaxRows) sh.bad[t] = 0;

    // Pass 0 is the kernel. A row whose output came out non-finite runs pass 1, with V entering at 2^-32 so that a
    // sum of values near the float range cannot overflow where their average does not (see flash_forward.cu).
    float o[Outputs];
    for (int pass = 0; pass < 2; pass++)
    {
        bool scaled = pass == 1;
        for (int n = 0; n < Outputs; n++) o[n] = 0.f;
        if (t < MaxRows) { sh.row_max[t] = neg_inf(); sh.row_sum[t] = 0.f; }
        __syncthreads();

        for (int j0 = key_begin; j0 < key_end; j0 += Step)
        {
            // Scores: thread t takes key j0 + t for every row; hidden keys score -inf and their K is never read.
            int j = j0 + t;
            for (int r = 0; r < MaxRows; r++)
            {
                float s = neg_inf();
                if (r < rows && j < key_end)
                {
                    int h, i;
                    row_of(p, kvh, row0 + r, h, i);
                    i64 offset = (i64)j - i - shift;
                    if (offset >= p.band_lo && offset <= p.band_hi)
                    {
                        const elem* key = k_head + key_offset(p, b, j, p.k_sb, p.k_sr);
                        float dot = 0.f;
                        for (int c = 0; c < p.d; c++) dot += sh.q[r][c] * load(key + c);
                        s = saturate_score(dot * p.scale);
                    }
                }
                sh.p[r][t] = s;
            }
            __syncthreads();
            // Online softmax, one thread per row: the step's maximum, the old sum rescaled, the new probabilities.
            if (t < rows)
            {
                float m = sh.row_max[t];
                for (int k = 0; k < Step; k++) m = fmaxf(m, sh.p[t][k]);
                float old = sh.row_max[t], rescale = old == neg_inf() ? 0.f : exp2f((old - m) * Log2e), sum = 0.f;
                for (int k = 0; k < Step; k++)
                {
                    float x = sh.p[t][k];
                    x = x == neg_inf() ? 0.f : exp2f((x - m) * Log2e);
                    sh.p[t][k] = x;
                    sum += x;
                }
                sh.row_sum[t] = sh.row_sum[t] * rescale + sum;
                sh.row_max[t] = m;
                sh.rescale[t] = rescale;
            }
            __syncthreads();
            // O = O * rescale + P V over the step's keys; a probability of 0 (a hidden key) skips its value row.
            int keys = min(Step, key_end - j0);
            for (int n = 0; n < Outputs; n++)
            {
                int x = t + n * Threads, r = x / MaxColumns, c = x % MaxColumns;
                if (r >= rows || c >= p.dv) continue;
                float acc = o[n] * sh.rescale[r];
                for (int k = 0; k < keys; k++)
                {
                    float probability = sh.p[r][k];
                    if (probability == 0.f) continue;
                    float value = load(v_head + key_offset(p, b, j0 + k, p.v_sb, p.v_sr) + c);
                    acc += probability * (scaled ? value * PassOneScale : value);
                }
                o[n] = acc;
            }
            __syncthreads();
        }

        if (pass == 0)
        {
            for (int n = 0; n < Outputs; n++)
            {
                int x = t + n * Threads, r = x / MaxColumns, c = x % MaxColumns;
                if (r < rows && c < p.dv && sh.row_sum[r] != 0.f && non_finite(o[n] / sh.row_sum[r])) sh.bad[r] = 1;
            }
            __syncthreads();
        }
        // Pass 0 writes every row; pass 1 rewrites the rows that came out non-finite (the others keep pass 0's bits).
        for (int n = 0; n < Outputs; n++)
        {
            int x = t + n * Threads, r = x / MaxColumns, c = x % MaxColumns;
            if (r >= rows || c >= p.dv || (pass == 1 && sh.bad[r] == 0)) continue;
            int h, i;
            row_of(p, kvh, row0 + r, h, i);
            float sum = sh.row_sum[r];
            float value = sum == 0.f ? 0.f : o[n] / sum;
            if (pass == 1) value *= 1.f / PassOneScale;
            p.partial_o[((((i64)split * p.batch + b) * p.heads + h) * p.lq + i) * p.dv + c] = value;
        }
        bool again = false;
        for (int r = 0; r < rows; r++) again |= sh.bad[r] != 0;
        __syncthreads(); // every thread has read the flags and the sums before pass 1 resets them
        if (pass == 1 || !again) break;
    }
    __syncthreads();
    if (t < rows)
    {
        int h, i;
        row_of(p, kvh, row0 + t, h, i);
        float sum = sh.row_sum[t];
        p.partial_lse[(((i64)split * p.batch + b) * p.heads + h) * p.lq + i] = sum == 0.f ? neg_inf() : sh.row_max[t] + logf(sum);
    }
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
