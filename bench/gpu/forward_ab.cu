// A/B timing of flash_forward.cu variants on a GPU machine without .NET: nvcc builds this file once per kernel source,
// head dimension and element type, and each binary times its kernel on one shape with CUDA events. Used by
// bench/gpu/forward_ab.sh to compare kernel changes in one device call (the engine's own `bench cuda` times the
// kernel the checkout holds; this times several sources side by side).
//   nvcc -O3 -std=c++17 -arch=sm_90 -DKERNEL_SOURCE='"path/flash_forward.cu"' -DAE_HEAD_DIM=64 [-DAE_BF16=1] forward_ab.cu
//   ./a.out B H N [causal] [seconds]   -> one line: milliseconds per launch and TFLOP/s
// Inputs are random values in [-1, 1); the output is reduced to a checksum so variants can be compared for sanity.
#include <cstring>
#include "ab_timing.h"

#include KERNEL_SOURCE

static unsigned short to_storage(float x)
{
    unsigned bits;
    memcpy(&bits, &x, 4);
#if AE_BF16
    return (unsigned short)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
#else
    // fp16 for values in [-1, 1): normal or zero, rounded toward zero (timing only needs plausible values)
    unsigned sign = (bits >> 16) & 0x8000u;
    int exponent = (int)((bits >> 23) & 0xffu) - 127 + 15;
    if (exponent <= 0) return (unsigned short)sign;
    return (unsigned short)(sign | (exponent << 10) | ((bits >> 13) & 0x3ffu));
#endif
}

int main(int argc, char** argv)
{
    if (argc < 4) { fprintf(stderr, "usage: %s B H N [causal] [seconds]\n", argv[0]); return 2; }
    int batch = atoi(argv[1]), heads = atoi(argv[2]), n = atoi(argv[3]);
    bool causal = argc > 4 && strcmp(argv[4], "causal") == 0;
    double seconds = argc > 5 ? atof(argv[5]) : 0.5;
    const int d = AE_HEAD_DIM;
    size_t elements = (size_t)batch * heads * n * d;
    std::vector<elem> host(elements);
    unsigned state = 12345u;
    for (auto& x : host)
    {
        state = state * 1664525u + 1013904223u;
        float value = (float)(state >> 8) / 8388608.f - 1.f;
#if AE_F32
        x = value;
#else
        x = to_storage(value);
#endif
    }
    elem *q, *k, *v, *o;
    float* lse;
    CHECK(cudaMalloc(&q, elements * sizeof(elem)));
    CHECK(cudaMalloc(&k, elements * sizeof(elem)));
    CHECK(cudaMalloc(&v, elements * sizeof(elem)));
    CHECK(cudaMalloc(&o, elements * sizeof(elem)));
    CHECK(cudaMalloc(&lse, (size_t)batch * heads * n * sizeof(float)));
    CHECK(cudaMemcpy(q, host.data(), elements * sizeof(elem), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(k, host.data(), elements * sizeof(elem), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(v, host.data(), elements * sizeof(elem), cudaMemcpyHostToDevice));

    FlashParams p;
    memset(&p, 0, sizeof p);
    p.q = q; p.k = k; p.v = v; p.o = o; p.lse = lse;
    const long long unbounded = 1LL << 40;
    p.band_lo = -unbounded;
    p.band_hi = causal ? 0 : unbounded;
    long long row = d, head = (long long)n * d, sample = (long long)heads * n * d;
    p.q_sb = p.k_sb = p.v_sb = p.o_sb = sample;
    p.q_sh = p.k_sh = p.v_sh = p.o_sh = head;
    p.q_sr = p.k_sr = p.v_sr = p.o_sr = row;
    p.lse_sb = (long long)heads * n; p.lse_sh = n; p.lse_sq = 1;
    p.batch = batch; p.heads = heads; p.kv_heads = heads; p.lq = n; p.lk = n;
    p.scale = 1.f / sqrtf((float)d);

    int shared = (flash::Br * flash::QkPitch + 2 * flash::Bc * flash::QkPitch + 2 * flash::Bc * flash::VPitch) * (int)sizeof(elem);
    CHECK(cudaFuncSetAttribute(AE_ENTRY, cudaFuncAttributeMaxDynamicSharedMemorySize, shared));
    dim3 grid(batch * heads, (n + flash::Br - 1) / flash::Br), block(flash::Threads);
    double ms = median_milliseconds([&] { AE_ENTRY<<<grid, block, shared>>>(p); }, seconds);
    double flops = 4.0 * batch * heads * (double)n * n * d * (causal ? 0.5 : 1.0);

    std::vector<elem> out(elements);
    CHECK(cudaMemcpy(out.data(), o, elements * sizeof(elem), cudaMemcpyDeviceToHost));
    double checksum = 0.0;
    for (size_t i = 0; i < elements; i += 97)
    {
#if AE_F32
        checksum += out[i];
#else
        checksum += out[i] * 1e-6;
#endif
    }
    printf("%s B%d H%d N%d D%d%s: %.3f ms, %.1f TFLOP/s, checksum %.6g\n", KERNEL_SOURCE, batch, heads, n, d, causal ? " causal" : "", ms,
        flops / (ms * 1e-3) / 1e12, checksum);
    return 0;
}
