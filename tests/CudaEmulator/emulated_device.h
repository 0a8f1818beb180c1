// CUDA's built-ins and the PTX warp operations our kernels use, for compiling kernels/Cuda/*.cu as C++ on the CPU
// (-DAE_EMULATE). Every CUDA thread runs as a fiber (cta_runtime.cpp); warp operations meet at a warp barrier, where
// each lane reads the other lanes' operands and computes its own result with the fragment layouts of the PTX ISA
// ("Matrix Fragments for mma.m16n8k16 / m16n8k8", "ldmatrix"; one map per fragment, ae_emu::place, which
// CudaFragmentLayoutTests checks lane by lane against the ISA's formulas). cp.async copies are queued and land only
// when the issuing thread waits for their group, so a kernel that reads a tile before waiting reads stale data here
// too; tests can switch to eager copies, other thread orders and truncated mma sums (ae_emu::set_modes).
//
// Each kernel variant is compiled in its own translation unit with -Dflash=<unique name>, so the variants' inline
// functions never merge at link time; everything below that depends on the variant's macros has internal linkage.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <algorithm>

#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(bytes) alignas(bytes)

namespace ae_emu
{
struct Dim3 { unsigned x, y, z; };

Dim3 thread_index();
Dim3 block_index();
void* dynamic_shared();
void sync_threads();

uint32_t warp_shuffle_xor(uint32_t value, int lane_mask);
uint32_t warp_shuffle(uint32_t value, int source_lane);
void warp_load_matrix_x4(uint32_t (&r)[4], const void* address, bool transpose);
void warp_mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bfloat16);
void warp_mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

// Plain global loads and stores are not intercepted; kernels whose addresses come from host-computed strides
// check them here under AE_EMULATE (false: the launch fails with CUDA_ERROR_ILLEGAL_ADDRESS; skip the access).
bool global_access_valid(const void* address, size_t bytes, const char* operation);

void async_copy(void* shared, const void* global, int copy_bytes, int source_bytes);
void async_commit();
void async_wait(int pending_groups);

uint16_t float_to_half(float x);     // round to nearest even, as cvt.rn.f16.f32
uint16_t float_to_bfloat16(float x); // round to nearest even, as cvt.rn.bf16.f32
uint32_t float_to_tf32(float x);     // round to nearest, ties away from zero, as cvt.rna.tf32.f32
float min_nan_f32(float a, float b); // min.NaN.f32
float max_nan_f32(float a, float b); // max.NaN.f32
float ex2_approx_ftz_f32(float x);   // ex2.approx.ftz.f32, 2 ulps off on purpose (cta_runtime.cpp)

typedef void (*KernelEntry)(const void* parameters);
struct Registrar { Registrar(const char* name, KernelEntry entry, int threads, int parameter_bytes); };

namespace
{
inline uint32_t as_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
inline float as_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

namespace ptx
{
inline void copy16_async(void* shared, const void* global, bool valid) { async_copy(shared, global, 16, valid ? 16 : 0); }
inline void commit_async() { async_commit(); }
template <int Pending> inline void wait_async() { async_wait(Pending); }
inline void load_matrix_x4(uint32_t (&r)[4], const uint16_t* p) { warp_load_matrix_x4(r, p, false); }
inline void load_matrix_x4_transposed(uint32_t (&r)[4], const uint16_t* p) { warp_load_matrix_x4(r, p, true); }
#if defined(AE_BF16)
inline void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { warp_mma_m16n8k16(d, a, b0, b1, AE_BF16 != 0); }
inline uint32_t pack(float lo, float hi)
{
    return AE_BF16 ? (uint32_t)float_to_bfloat16(lo) | (uint32_t)float_to_bfloat16(hi) << 16
                   : (uint32_t)float_to_half(lo) | (uint32_t)float_to_half(hi) << 16;
}
#endif
inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { warp_mma_m16n8k8_tf32(d, a, b0, b1); }
inline uint32_t to_tf32(float x) { return float_to_tf32(x); }

inline float min_nan(float a, float b) { return min_nan_f32(a, b); }
inline float max_nan(float a, float b) { return max_nan_f32(a, b); }
inline float ex2_approx_ftz(float x) { return ex2_approx_ftz_f32(x); }
} // namespace ptx
} // namespace
} // namespace ae_emu

#define threadIdx (::ae_emu::thread_index())
#define blockIdx (::ae_emu::block_index())

inline void __syncthreads() { ae_emu::sync_threads(); }
inline float __shfl_xor_sync(unsigned, float x, int lane_mask) { return ae_emu::as_float(ae_emu::warp_shuffle_xor(ae_emu::as_bits(x), lane_mask)); }
inline unsigned __shfl_xor_sync(unsigned, unsigned x, int lane_mask) { return ae_emu::warp_shuffle_xor(x, lane_mask); }
inline float __shfl_sync(unsigned, float x, int source_lane) { return ae_emu::as_float(ae_emu::warp_shuffle(ae_emu::as_bits(x), source_lane)); }
inline float __int_as_float(unsigned u) { return ae_emu::as_float(u); }
inline unsigned __float_as_uint(float x) { return ae_emu::as_bits(x); }
using std::max;
using std::min;

#define AE_EMULATED_KERNEL_(entry, Params, threads)                                                                    \
    static ::ae_emu::Registrar ae_emulated_##entry(                                                               \
        #entry, [](const void* parameters) { entry(*static_cast<const Params*>(parameters)); }, threads, sizeof(Params));
#define AE_EMULATED_KERNEL(entry, Params, threads) AE_EMULATED_KERNEL_(entry, Params, threads)
