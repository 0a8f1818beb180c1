// Shared by forward_ab.cu and decode_ab.cu: error checks and the timing loop (CUDA events, median of ten batches).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <cuda_runtime.h>

#define CHECK(call)                                                                                                    \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) { fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_)); exit(2); }              \
    } while (0)

// Milliseconds per call of `call` (one or more kernel launches): three warm-up calls, then ten batches of about a
// tenth of `seconds` each; the median batch's time per call.
template <class Call>
double median_milliseconds(Call call, double seconds)
{
    for (int i = 0; i < 3; i++) call();
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    CHECK(cudaEventRecord(start));
    call();
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    float once = 0.f;
    CHECK(cudaEventElapsedTime(&once, start, stop));
    int calls = (int)fmax(1.0, seconds * 1000.0 / 10.0 / once);
    std::vector<float> batches;
    for (int t = 0; t < 10; t++)
    {
        CHECK(cudaEventRecord(start));
        for (int i = 0; i < calls; i++) call();
        CHECK(cudaEventRecord(stop));
        CHECK(cudaEventSynchronize(stop));
        float ms = 0.f;
        CHECK(cudaEventElapsedTime(&ms, start, stop));
        batches.push_back(ms / calls);
    }
    CHECK(cudaGetLastError());
    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(stop));
    std::sort(batches.begin(), batches.end());
    return batches[batches.size() / 2];
}
