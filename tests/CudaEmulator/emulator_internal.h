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

// Harder judging, for tests: with eager copies a cp.async lands when it is issued (not at the issuing thread's wait),
// so a copy into a buffer other threads still read shows; a nonzero schedule seed changes, round by round, the order
// in which a block's threads run between barriers (rotated, and reversed every other round), so results that depend on
// the order of unsynchronised accesses show; truncated accumulation sums mma products as tensor cores are measured to
// (aligned to the largest exponent, truncated) instead of exactly. All apply to launches that start after the call.
void set_modes(bool eager_copies, unsigned schedule_seed, bool truncated_accumulation);

// Where an element of a warp operand lives: the lane holding it, which of its 32-bit registers, which 16-bit half
// (0 for 32-bit elements). The emulator's warp operations read and write operands only through these maps, and a
// test checks them, lane by lane, against the PTX ISA's fragment layouts derived independently.
struct Place { int lane, reg, half; };
enum class Fragment { MmaF16A, MmaF16B, MmaAccumulator, MmaTf32A, MmaTf32B, LoadMatrix, LoadMatrixTransposed };
// Element (row, column) of the fragment's matrix (for ldmatrix x4: row = 8 · matrix + row within it).
Place place(Fragment fragment, int row, int column);

// True when [address, address + bytes) lies inside one live device allocation.
bool device_range_valid(const void* address, size_t bytes);
} // namespace ae_emu
