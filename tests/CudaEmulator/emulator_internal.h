// What the emulator's parts share: the kernel registry, grid execution and the device-memory registry.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string>

#include "emulated_device.h"

namespace ae_emu
{
struct Kernel
{
    const char* name;
    KernelEntry entry;
    int threads;          // the block size the kernel is written for (its __launch_bounds__)
    int parameter_bytes;
};

// The registered kernel called `name`, or null.
const Kernel* find_kernel(const char* name);

// Runs every block of the grid (blocks spread over the machine's cores, each block's threads as fibers on one core).
// Returns an empty string, or what went wrong (an illegal address, a barrier no thread can pass, ...).
std::string run_grid(const Kernel& kernel, Dim3 grid, Dim3 block, size_t shared_bytes, const void* parameters);

// True when [address, address + bytes) lies inside one live device allocation.
bool device_range_valid(const void* address, size_t bytes);
} // namespace ae_emu
