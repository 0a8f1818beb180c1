// Copies a [batch, heads, rows, columns] tensor between two strided device layouts, zero-filling destination columns
// past the source's. The CUDA backend uses it on device tensors the flash kernel cannot address in place: to pack
// Q/K/V into rows of exactly the kernel's head dimension, 16-byte aligned (other head dimensions, odd strides,
// unaligned addresses), and to unpack the kernel's padded output into the caller's layout. One thread per
// destination element, consecutive threads on consecutive columns, so contiguous rows are read and written coalesced.
//
// Self-contained like flash_forward.cu (NVRTC compiles it at first use; CMake builds it into a fatbin). Entry points
// strided_copy_b16 and strided_copy_b32 move 2- and 4-byte elements as bits; 256 threads per block, any grid (the
// block loop strides over the whole tensor). Under AE_EMULATE the CPU emulator compiles it as C++.

#ifdef AE_EMULATE
#include "emulated_device.h"
#endif

typedef long long i64;

struct CopyParams
{
    const void* src; void* dst;
    i64 src_sb, src_sh, src_sr; // element (b, h, r, c) of the source at b*src_sb + h*src_sh + r*src_sr + c
    i64 dst_sb, dst_sh, dst_sr;
    i64 total;                  // batch * heads * rows * dst_cols
    int heads, rows;
    int src_cols, dst_cols;     // destination columns c >= src_cols get zeros
    int blocks, pad_;           // the grid's block count (the loop's stride)
};

// The host mirror (engine/Backends/Cuda/CopyParams.cs) is tested against this size.
static_assert(sizeof(CopyParams) == 96, "CopyParams layout changed: update the host mirror");

namespace strided_copy
{
constexpr int Threads = 256;

template <typename Element>
__device__ __forceinline__ void run(const CopyParams& p)
{
    const Element* src = (const Element*)p.src;
    Element* dst = (Element*)p.dst;
    for (i64 n = (i64)blockIdx.x * Threads + threadIdx.x; n < p.total; n += (i64)p.blocks * Threads)
    {
        int c = (int)(n % p.dst_cols);
        i64 row = n / p.dst_cols;
        int r = (int)(row % p.rows);
        i64 bh = row / p.rows;
        int h = (int)(bh % p.heads);
        i64 b = bh / p.heads;
        const Element* from = src + b * p.src_sb + h * p.src_sh + r * p.src_sr + c;
        Element* to = dst + b * p.dst_sb + h * p.dst_sh + r * p.dst_sr + c;
#ifdef AE_EMULATE
        if ((c < p.src_cols && !ae_emu::global_access_valid(from, sizeof(Element), "load"))
            || !ae_emu::global_access_valid(to, sizeof(Element), "store")) return;
#endif
        *to = c < p.src_cols ? *from : (Element)0;
    }
}
} // namespace strided_copy

extern "C" __global__ void __launch_bounds__(strided_copy::Threads) strided_copy_b16(const CopyParams p)
{
    strided_copy::run<unsigned short>(p);
}

extern "C" __global__ void __launch_bounds__(strided_copy::Threads) strided_copy_b32(const CopyParams p)
{
    strided_copy::run<unsigned int>(p);
}

#ifdef AE_EMULATE
AE_EMULATED_KERNEL(strided_copy_b16, CopyParams, strided_copy::Threads)
AE_EMULATED_KERNEL(strided_copy_b32, CopyParams, strided_copy::Threads)
#endif
