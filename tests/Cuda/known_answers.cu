// Known answers for the warp operations our CUDA kernels use, from one warp on small exact inputs, so that the first
// GPU run can settle whether the CPU emulator (tests/CudaEmulator) executes each one as the hardware does. Every lane
// writes the raw bits of its result registers; CudaKnownAnswerTests compares them with known_answers.expected (what
// the emulator gives, itself checked there against the PTX ISA's formulas) on the emulator and on a GPU alike.
//
// Inputs are small integers (or exactly chosen floats), so a product's sum is exact in any order: a mismatch is a
// fragment layout, a pack order, a rounding rule or a copy, never accumulation order. Fragments are built from the
// ISA's documented maps ("Matrix Fragments for mma.m16n8k16 / m16n8k8"), independently of the flash kernel.
//
// Compiled by NVRTC (no headers) for the device, and by g++ with -DAE_EMULATE into the emulator (tests/CudaEmulator).
// One block of 32 threads; 1 KiB of dynamic shared memory; out holds Probes x 32 lanes x 8 words.

#ifdef AE_EMULATE
#include "emulated_device.h"
#endif

typedef unsigned int u32;
typedef unsigned short u16;

struct KnownAnswerParams
{
    u32* out;           // [Probes][32][8]
    const u32* source;  // 16 words of device memory for cp.async
};

namespace known
{
constexpr int Words = 8;

__device__ __forceinline__ u32 bits(float x) { return __float_as_uint(x); }

// The inputs: A (row, k) and B (k, col) in -3..3 and -2..2, C (row, col) in 0..3.
__device__ __forceinline__ float a_value(int row, int k) { return (float)((row * 3 + k * 5) % 7 - 3); }
__device__ __forceinline__ float b_value(int k, int col) { return (float)((k * 2 + col * 7 + 1) % 5 - 2); }
__device__ __forceinline__ float c_value(int row, int col) { return (float)((row + col) % 4); }

#ifdef AE_EMULATE
__device__ __forceinline__ u32 to_half(float x) { return ae_emu::float_to_half(x); }
__device__ __forceinline__ u32 to_bf16(float x) { return ae_emu::float_to_bfloat16(x); }
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) { return to_bf16(lo) | to_bf16(hi) << 16; }
__device__ __forceinline__ u32 pack_f16(float lo, float hi) { return to_half(lo) | to_half(hi) << 16; }
__device__ __forceinline__ u32 to_tf32(float x) { return ae_emu::float_to_tf32(x); }
__device__ __forceinline__ void mma16(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1, bool bf16) { ae_emu::warp_mma_m16n8k16(d, a, b0, b1, bf16); }
__device__ __forceinline__ void mma_tf32(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1) { ae_emu::warp_mma_m16n8k8_tf32(d, a, b0, b1); }
__device__ __forceinline__ void ldmatrix(u32 (&r)[4], const u16* p, bool transpose) { ae_emu::warp_load_matrix_x4(r, p, transpose); }
__device__ __forceinline__ void copy16(void* shared, const void* global, int source_bytes) { ae_emu::async_copy(shared, global, 16, source_bytes); }
__device__ __forceinline__ void commit_and_wait() { ae_emu::async_commit(); ae_emu::async_wait(0); }
#else
__device__ __forceinline__ u32 shared_address(const void* p) { return (u32)__cvta_generic_to_shared(p); }
// A 16-bit conversion in the low half of a pack whose high half is zero.
__device__ __forceinline__ u32 to_half(float x) { u32 r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(0.f), "f"(x)); return r; }
__device__ __forceinline__ u32 to_bf16(float x) { u32 r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(0.f), "f"(x)); return r; }
// cvt's first source goes to the upper half: pack(lo, hi) passes hi first.
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) { u32 r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r; }
__device__ __forceinline__ u32 pack_f16(float lo, float hi) { u32 r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r; }
__device__ __forceinline__ u32 to_tf32(float x) { u32 r; asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x)); return r; }
__device__ __forceinline__ void mma16(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1, bool bf16)
{
    if (bf16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_tf32(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1)
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldmatrix(u32 (&r)[4], const u16* p, bool transpose)
{
    if (transpose)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(p)));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(shared_address(p)));
}
__device__ __forceinline__ void copy16(void* shared, const void* global, int source_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(shared_address(shared)), "l"(global), "r"(source_bytes));
}
__device__ __forceinline__ void commit_and_wait() { asm volatile("cp.async.commit_group;"); asm volatile("cp.async.wait_group 0;"); }
#endif

__device__ __forceinline__ void store(u32* out, int probe, int lane, const u32* words, int count)
{
    for (int w = 0; w < Words; w++) out[(probe * 32 + lane) * Words + w] = w < count ? words[w] : 0u;
}

// Probes 0 and 1: mma.m16n8k16 f16 and bf16, A 16x16 and B 16x8 from the ISA's maps (g = lane / 4, t = lane % 4):
// a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g);
// C and D: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
__device__ void probe_mma16(u32* out, int probe, bool bf16)
{
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    u32 a[4];
    for (int r = 0; r < 4; r++)
    {
        int row = g + (r % 2) * 8, k = 2 * t + (r / 2) * 8;
        a[r] = bf16 ? pack_bf16(a_value(row, k), a_value(row, k + 1)) : pack_f16(a_value(row, k), a_value(row, k + 1));
    }
    u32 b[2];
    for (int r = 0; r < 2; r++)
    {
        int k = 2 * t + r * 8;
        b[r] = bf16 ? pack_bf16(b_value(k, g), b_value(k + 1, g)) : pack_f16(b_value(k, g), b_value(k + 1, g));
    }
    float d[4] = { c_value(g, 2 * t), c_value(g, 2 * t + 1), c_value(g + 8, 2 * t), c_value(g + 8, 2 * t + 1) };
    mma16(d, a, b[0], b[1], bf16);
    u32 words[4] = { bits(d[0]), bits(d[1]), bits(d[2]), bits(d[3]) };
    store(out, probe, lane, words, 4);
}

// Probe 2: mma.m16n8k8 tf32: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (k t, n g), b1 (k t+4, n g).
__device__ void probe_mma_tf32(u32* out, int probe)
{
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    u32 a[4] = { to_tf32(a_value(g, t)), to_tf32(a_value(g + 8, t)), to_tf32(a_value(g, t + 4)), to_tf32(a_value(g + 8, t + 4)) };
    u32 b0 = to_tf32(b_value(t, g)), b1 = to_tf32(b_value(t + 4, g));
    float d[4] = { c_value(g, 2 * t), c_value(g, 2 * t + 1), c_value(g + 8, 2 * t), c_value(g + 8, 2 * t + 1) };
    mma_tf32(d, a, b0, b1);
    u32 words[4] = { bits(d[0]), bits(d[1]), bits(d[2]), bits(d[3]) };
    store(out, probe, lane, words, 4);
}

// Probes 3 and 4: ldmatrix x4 and x4.trans over four 8x8 b16 matrices stored as 32 rows of 8 (element (m, r, c) =
// m*64 + r*8 + c + 1); lane L gives the address of row L % 8 of matrix L / 8, which is row L.
__device__ void probe_ldmatrix(u32* out, int probe, u16* shared, bool transpose)
{
    int lane = threadIdx.x % 32;
    for (int i = lane; i < 256; i += 32) shared[i] = (u16)(i + 1);
    __syncthreads();
    u32 r[4];
    ldmatrix(r, shared + lane * 8, transpose);
    store(out, probe, lane, r, 4);
    __syncthreads();
}

// Probe 5: conversions. Lane L converts value L (lo) and value L + 1 (hi): the bf16x2 and f16x2 packs (which half
// the first source lands in, round to nearest even, overflow, NaN) and cvt.rna.tf32 of value L (ties away from zero,
// infinity, NaN payloads).
__device__ float probe_value(int i)
{
    const u32 values[32] = {
        0x3f800000u, // 1
        0xc0200000u, // -2.5
        0x3f808000u, // 1 + 2^-8: a bf16 tie, to even (1)
        0x3f818000u, // 1 + 3*2^-8: a bf16 tie, to even (1 + 2^-6)
        0x3f801000u, // 1 + 2^-11: an f16 tie, to even (1); a tf32 tie, away (1 + 2^-10)
        0xbf801000u, // -(1 + 2^-11)
        0x3f803000u, // 1 + 3*2^-11: an f16 tie, to even (1 + 2^-9)
        0x477ff000u, // 65520: rounds to f16 infinity
        0x477fe000u, // 65504: the largest f16
        0x32abcc77u, // 2e-8: an f16 subnormal
        0x7f7fffffu, // the largest float: bf16 infinity, tf32 infinity
        0x7f800000u, // +inf
        0xff800000u, // -inf
        0x7fc00000u, // the canonical NaN
        0x7fc01234u, // NaN with payload bits in the tf32 range and below
        0x7f800001u, // NaN whose payload lies only in the 13 bits tf32 drops
        0xffc00001u, // negative NaN
        0x00000001u, // the smallest subnormal float
        0x80400000u, // a negative subnormal float
        0x3effffffu, // just below 0.5
        0x3f7fffffu, // just below 1
        0xbf7fffffu, // just above -1
        0x4b000001u, // 2^23 + 1
        0x3e2aaaabu, // 1/6
        0x00000000u, // +0
        0x80000000u, // -0
        0x3fc00000u, // 1.5
        0x40490fdbu, // pi
        0xc2f6e979u, // -123.456
        0x38800000u, // 2^-14: the smallest normal f16
        0x33800000u, // 2^-24: the smallest f16 subnormal
        0x33000000u, // 2^-25: an f16 tie with zero, to even (0)
    };
    return __int_as_float(values[i % 32]);
}

__device__ void probe_conversions(u32* out, int probe)
{
    int lane = threadIdx.x % 32;
    float lo = probe_value(lane), hi = probe_value(lane + 1);
    u32 words[5] = { pack_bf16(lo, hi), pack_f16(lo, hi), to_tf32(lo), to_bf16(lo), to_half(lo) };
    store(out, probe, lane, words, 5);
}

// Probe 6: cp.async.cg 16 bytes with source size 16 (copied) or 0 (zero-filled), into shared memory holding 0xFF
// bytes; lanes 0..3 copy, lanes with an odd index zero-fill; after the wait every lane reads word L of the 64 bytes
// and word L of the same bytes as a second read (lanes 16..31 read words 0..15 again).
__device__ void probe_async_copy(u32* out, int probe, u32* shared, const u32* source)
{
    int lane = threadIdx.x % 32;
    for (int i = lane; i < 16; i += 32) shared[i] = 0xffffffffu;
    __syncthreads();
    if (lane < 4) copy16(shared + lane * 4, source + lane * 4, lane % 2 == 0 ? 16 : 0);
    commit_and_wait();
    __syncthreads();
    u32 words[1] = { shared[lane % 16] };
    store(out, probe, lane, words, 1);
    __syncthreads();
}

// Probe 7: shuffles of x = lane * 0x01010101 + 0x100: xor with 1, 2, 4, 8, 16, and from lane (7L + 3) % 32.
__device__ void probe_shuffles(u32* out, int probe)
{
    int lane = threadIdx.x % 32;
    u32 x = (u32)lane * 0x01010101u + 0x100u;
    u32 words[6];
    for (int m = 0; m < 5; m++) words[m] = __shfl_xor_sync(0xffffffffu, x, 1 << m);
    words[5] = __float_as_uint(__shfl_sync(0xffffffffu, __int_as_float(x), (7 * lane + 3) % 32));
    store(out, probe, lane, words, 6);
}
} // namespace known

extern "C" __global__ void __launch_bounds__(32) known_answers(const KnownAnswerParams p)
{
    using namespace known;
#ifdef AE_EMULATE
    unsigned char* shared = (unsigned char*)ae_emu::dynamic_shared();
#else
    extern __shared__ __align__(16) unsigned char shared[];
#endif
    probe_mma16(p.out, 0, false);
    probe_mma16(p.out, 1, true);
    probe_mma_tf32(p.out, 2);
    probe_ldmatrix(p.out, 3, (u16*)shared, false);
    probe_ldmatrix(p.out, 4, (u16*)shared, true);
    probe_conversions(p.out, 5);
    probe_async_copy(p.out, 6, (u32*)shared, p.source);
    probe_shuffles(p.out, 7);
}

#ifdef AE_EMULATE
AE_EMULATED_KERNEL(known_answers, KnownAnswerParams, 32)
#endif
