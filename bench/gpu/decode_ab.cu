// A/B timing of flash_decode.cu variants on a GPU machine without .NET, the decode twin of forward_ab.cu: nvcc builds
// this file once per kernel source and element type, and each binary times the split kernel and its merge (as the
// engine launches them, splits chosen as CudaDecodeKernel.Split does) on one decode shape with CUDA events.
//   nvcc -O3 -std=c++17 -arch=sm_90 -DKERNEL_SOURCE='"path/flash_decode.cu"' [-DAE_BF16=1] decode_ab.cu
//   ./a.out B H Hkv Lk D [seconds]   -> one line: milliseconds per call, K/V GB/s, splits
#include <algorithm>
#include <cstring>
#include "ab_timing.h"

#include KERNEL_SOURCE

// The host's constants (engine/Backends/Cuda/CudaDecodeKernel.cs): rows per block, the split granule, blocks per SM.
constexpr int RowsPerBlock = 4, KeysPerStep = 64, BlocksPerMultiprocessor = 4;

int main(int argc, char** argv)
{
    if (argc < 6) { fprintf(stderr, "usage: %s B H Hkv Lk D [seconds]\n", argv[0]); return 2; }
    int batch = atoi(argv[1]), heads = atoi(argv[2]), kv_heads = atoi(argv[3]), lk = atoi(argv[4]), d = atoi(argv[5]);
    double seconds = argc > 6 ? atof(argv[6]) : 0.5;
    const int lq = 1;
    size_t q_elements = (size_t)batch * heads * lq * d, kv_elements = (size_t)batch * kv_heads * lk * d;
    // Values: small random bits of the storage type (timing needs plausible values, not exact ones).
    std::vector<elem> host(kv_elements);
    unsigned state = 12345u;
    for (auto& x : host)
    {
        state = state * 1664525u + 1013904223u;
#if AE_F32
        x = (float)(state >> 8) / 8388608.f - 1.f;
#else
        x = (elem)(0x3000u | (state >> 22)); // positive values around 0.1 in fp16 and 4e-10 in bf16
#endif
    }
    int multiprocessors = 0;
    CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, 0));
    long long blocks = std::max(1LL, ((long long)batch * heads * lq + RowsPerBlock - 1) / RowsPerBlock);
    int steps = std::max(1, (lk + KeysPerStep - 1) / KeysPerStep);
    long long wanted = std::max(1LL, ((long long)BlocksPerMultiprocessor * multiprocessors + blocks - 1) / blocks);
    int splits = (int)std::min(std::min(wanted, (long long)steps), 65535LL);
    int steps_per_split = (steps + splits - 1) / splits;
    splits = (steps + steps_per_split - 1) / steps_per_split;

    elem *q, *k, *v, *o;
    float *partial_o, *partial_lse;
    CHECK(cudaMalloc(&q, q_elements * sizeof(elem)));
    CHECK(cudaMalloc(&k, kv_elements * sizeof(elem)));
    CHECK(cudaMalloc(&v, kv_elements * sizeof(elem)));
    CHECK(cudaMalloc(&o, q_elements * sizeof(elem)));
    CHECK(cudaMalloc(&partial_o, (size_t)splits * q_elements * sizeof(float)));
    CHECK(cudaMalloc(&partial_lse, (size_t)splits * batch * heads * lq * sizeof(float)));
    CHECK(cudaMemcpy(q, host.data(), q_elements * sizeof(elem), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(k, host.data(), kv_elements * sizeof(elem), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(v, host.data(), kv_elements * sizeof(elem), cudaMemcpyHostToDevice));

    DecodeParams p;
    memset(&p, 0, sizeof p);
    p.q = q; p.k = k; p.v = v; p.o = o; p.partial_o = partial_o; p.partial_lse = partial_lse;
    const long long unbounded = 1LL << 40;
    p.band_lo = -unbounded; p.band_hi = unbounded;
    p.q_sb = p.o_sb = (long long)heads * lq * d; p.q_sh = p.o_sh = (long long)lq * d; p.q_sr = p.o_sr = d;
    p.k_sb = p.v_sb = (long long)kv_heads * lk * d; p.k_sh = p.v_sh = (long long)lk * d; p.k_sr = p.v_sr = d;
    p.batch = batch; p.heads = heads; p.kv_heads = kv_heads; p.lq = lq; p.lk = lk; p.d = d; p.dv = d;
    p.splits = splits; p.keys_per_split = steps_per_split * KeysPerStep;
    p.scale = 1.f / sqrtf((float)d);

    int row_chunks = (heads / kv_heads * lq + RowsPerBlock - 1) / RowsPerBlock;
    dim3 grid(batch * kv_heads, splits, row_chunks), block(decode::Threads);
    unsigned merge_blocks = (unsigned)((q_elements + decode::Threads - 1) / decode::Threads);
    auto call = [&] {
        AE_DECODE_ENTRY<<<grid, block, decode::SharedBytes>>>(p);
        AE_MERGE_ENTRY<<<merge_blocks, decode::Threads>>>(p);
    };
    double ms = median_milliseconds(call, seconds);
    double bytes = 2.0 * kv_elements * sizeof(elem);
    std::vector<elem> out(q_elements);
    CHECK(cudaMemcpy(out.data(), o, q_elements * sizeof(elem), cudaMemcpyDeviceToHost));
    double checksum = 0.0;
    for (size_t i = 0; i < q_elements; i++) checksum += (double)out[i];
    printf("%s B%d H%d Hkv%d Lk%d D%d: %.4f ms, %.1f GB/s K/V, %d splits, checksum %.6g\n", KERNEL_SOURCE, batch, heads, kv_heads, lk, d,
        ms, bytes / (ms * 1e-3) / 1e9, splits, checksum);
    return 0;
}
