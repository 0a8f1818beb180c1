// Runs CUDA thread blocks on the CPU: every thread of a block is a fiber with its own stack, switched by a few lines
// of x86-64 assembly; blocks of a grid are spread over the cores. A fiber runs until it reaches a barrier
// (__syncthreads, or the warp barrier inside every warp operation) and yields; the scheduler resumes the fibers in
// turn and reports a block in which no fiber can pass its barrier (divergent warp operations, a __syncthreads some
// threads skip) instead of hanging. Shared memory starts as 0xFF bytes (NaN in fp16, bf16 and fp32), so a kernel that
// reads what it never wrote gets NaN here, and guards before and after the block's shared memory (a NaN pattern too)
// catch overruns both ways.
#include <cstdlib>
#include <array>
#include <atomic>
#include <cmath>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "emulator_internal.h"

extern "C" void ae_switch_context(void** save_stack, void* load_stack);

// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores the stack pointer in
// *save_stack (rdi), switches to load_stack (rsi) and restores the same set from it.
asm(R"(
    .pushsection .text
    .globl ae_switch_context
    .hidden ae_switch_context
    .type ae_switch_context, @function
ae_switch_context:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ae_switch_context, .-ae_switch_context
    .popsection
)");

namespace ae_emu
{
namespace
{
constexpr size_t StackBytes = 256 * 1024;
constexpr size_t GuardBytes = 4096;

// Guards on both sides of a block's shared memory hold a NaN pattern (halves of 0x7FC0: NaN as fp32, fp16 and bf16),
// distinct from the 0xFF fill: a read past either end gets NaN, a write there fails the block.
unsigned char guard_byte(size_t offset) { return offset % 2 == 0 ? 0xC0 : 0x7F; }

struct PendingCopy { unsigned char* shared; const unsigned char* global; int bytes, source_bytes; };

std::atomic<bool> eager_copies{ false };
std::atomic<unsigned> schedule_seed{ 0 };
// AE_EMU_TRUNCATED_ACCUMULATION=1 starts the process in the pessimistic model (to run any suite under it by hand).
std::atomic<bool> truncated_accumulation{ [] { const char* v = std::getenv("AE_EMU_TRUNCATED_ACCUMULATION"); return v && *v == '1'; }() };

// Lands one copy: its source bytes, then zeros up to its size (cp.async's zero fill).
void land(const PendingCopy& copy)
{
    if (copy.source_bytes > 0) memcpy(copy.shared, copy.global, (size_t)copy.source_bytes);
    memset(copy.shared + copy.source_bytes, 0, (size_t)(copy.bytes - copy.source_bytes));
}

// The n-th thread to run in a round: in order without a seed, else rotated by a per-round amount and reversed every
// other round (a permutation of the block's threads).
int scheduled(int n, int threads, unsigned round, unsigned seed)
{
    if (seed == 0) return n;
    int rotation = (int)((seed * 2654435761u + round * 40503u) % (unsigned)threads);
    return (seed + round) % 2 == 0 ? (rotation + n) % threads : (rotation + threads - 1 - n) % threads;
}

// With a schedule seed, every third round runs the block one warp at a time (see run_block).
bool warp_serial(unsigned seed, unsigned round, int threads) { return seed != 0 && threads % 32 == 0 && (seed + round) % 3 == 2; }

struct Fiber
{
    void* stack_pointer = nullptr;
    bool done = false;
    bool at_block_barrier = false;                      // in __syncthreads, waiting for barrier_generation to pass
    unsigned barrier_generation = 0;
    std::vector<PendingCopy> open;                      // cp.async issued since the last commit
    std::deque<std::vector<PendingCopy>> committed;     // committed groups, oldest first
};

struct Slot { uint64_t words[6]; const char* operation; };

struct Warp { int arrived = 0; unsigned generation = 0; Slot slots[32]; };

struct Block
{
    const Kernel* kernel;
    const void* parameters;
    Dim3 index;
    int threads;
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    unsigned char* shared;
    size_t shared_bytes;
    int arrived = 0;
    unsigned generation = 0;
    uint64_t events = 0;
    int current = 0;
    void* scheduler_stack = nullptr;
    std::string error;
};

// One per OS thread running blocks: fiber stacks and shared memory are reused from block to block.
struct Worker
{
    std::vector<std::unique_ptr<char[]>> stacks;
    std::vector<unsigned char> shared;
};

thread_local Block* current_block = nullptr;

std::vector<Kernel>& registry()
{
    static std::vector<Kernel> kernels;
    return kernels;
}

void fail(Block& block, const std::string& message)
{
    if (block.error.empty()) block.error = message;
}

void yield(Block& block) { ae_switch_context(&block.fibers[block.current].stack_pointer, block.scheduler_stack); }

void fiber_main()
{
    Block& block = *current_block;
    block.kernel->entry(block.parameters);
    Fiber& fiber = block.fibers[block.current];
    fiber.done = true;
    block.events++;
    ae_switch_context(&fiber.stack_pointer, block.scheduler_stack);
    abort(); // a finished fiber is never resumed
}

void start_fiber(Fiber& fiber, char* stack)
{
    auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(stack + StackBytes) & ~uintptr_t(15));
    *--top = 0;                                                   // fiber_main's return address: never used
    *--top = reinterpret_cast<uint64_t>(&fiber_main);             // where the first switch "returns" to
    for (int i = 0; i < 6; i++) *--top = 0;                       // rbp, rbx, r12 .. r15
    *--top = 0x1F80ull | (0x037Full << 32);                       // default MXCSR and x87 control word
    fiber.stack_pointer = top;
}

void wait_at(Block& block, int& arrived, unsigned& generation, int count)
{
    unsigned mine = generation;
    block.events++;
    if (++arrived == count)
    {
        arrived = 0;
        generation++;
        return;
    }
    while (generation == mine) yield(block);
}

Block& here() { return *current_block; }
int lane() { return here().current % 32; }
Warp& warp() { return here().warps[here().current / 32]; }

// Every lane publishes its operands in its slot and waits for the others; the caller then reads any lane's slot and
// calls leave() before the slots may be reused.
Slot& enter(const char* operation)
{
    Slot& slot = warp().slots[lane()];
    slot.operation = operation;
    return slot;
}

void meet(const char* operation)
{
    Block& block = here();
    Warp& w = warp();
    wait_at(block, w.arrived, w.generation, 32);
    for (int l = 0; l < 32; l++)
        if (w.slots[l].operation != operation)
        {
            fail(block, std::string("lanes of warp ") + std::to_string(block.current / 32) + " reached different warp operations: "
                + operation + " and " + w.slots[l].operation);
            break;
        }
}

void leave()
{
    Block& block = here();
    Warp& w = warp();
    wait_at(block, w.arrived, w.generation, 32);
}

float half_to_float(uint16_t h)
{
    uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
    if (exponent == 0x1F) return as_float(sign | 0x7F800000u | mantissa << 13);
    if (exponent == 0) return (sign ? -1.f : 1.f) * ldexpf((float)mantissa, -24);
    return as_float(sign | (exponent + 112) << 23 | mantissa << 13);
}

float bfloat16_to_float(uint16_t h) { return as_float((uint32_t)h << 16); }

float element(uint32_t reg, int high, bool bfloat16)
{
    uint16_t bits = high ? (uint16_t)(reg >> 16) : (uint16_t)(reg & 0xFFFF);
    return bfloat16 ? bfloat16_to_float(bits) : half_to_float(bits);
}

bool in_shared(const Block& block, const void* address, size_t bytes)
{
    auto p = static_cast<const unsigned char*>(address);
    return p >= block.shared && p + bytes <= block.shared + block.shared_bytes;
}

std::string describe(const void* p)
{
    char text[32];
    snprintf(text, sizeof text, "%p", p);
    return text;
}

std::string run_block(Worker& worker, const Kernel& kernel, Dim3 index, int threads, size_t shared_bytes, const void* parameters)
{
    Block block;
    block.kernel = &kernel;
    block.parameters = parameters;
    block.index = index;
    block.threads = threads;
    block.fibers.resize(threads);
    block.warps.resize(threads / 32);
    worker.shared.assign(GuardBytes + shared_bytes + GuardBytes, 0xFF);
    for (size_t i = 0; i < GuardBytes; i++)
    {
        worker.shared[i] = guard_byte(i);
        worker.shared[GuardBytes + shared_bytes + i] = guard_byte(GuardBytes + shared_bytes + i);
    }
    block.shared = worker.shared.data() + GuardBytes;
    block.shared_bytes = shared_bytes;
    while ((int)worker.stacks.size() < threads) worker.stacks.emplace_back(new char[StackBytes]);
    for (int t = 0; t < threads; t++) start_fiber(block.fibers[t], worker.stacks[t].get());

    current_block = &block;
    unsigned seed = schedule_seed.load();
    for (unsigned round = 0;; round++)
    {
        uint64_t before = block.events;
        int alive = 0;
        if (warp_serial(seed, round, threads))
        {
            // One warp at a time, each run until all its threads wait at a __syncthreads (warp operations need only
            // their own warp): a warp gets a whole phase ahead of the others, so a buffer refilled before every warp
            // is done reading it (a missing barrier) is overwritten while they still read it.
            int warps = threads / 32;
            for (const Fiber& fiber : block.fibers) alive += fiber.done ? 0 : 1;
            for (int k = 0; k < warps; k++)
            {
                int w = (int)((seed + round + (unsigned)k) % (unsigned)warps);
                for (;;)
                {
                    uint64_t mark = block.events;
                    bool ran = false;
                    for (int t = w * 32; t < w * 32 + 32; t++)
                    {
                        Fiber& fiber = block.fibers[t];
                        if (fiber.done || (fiber.at_block_barrier && fiber.barrier_generation == block.generation)) continue;
                        ran = true;
                        block.current = t;
                        ae_switch_context(&block.scheduler_stack, fiber.stack_pointer);
                    }
                    if (!ran || block.events == mark) break;
                }
            }
        }
        else
        for (int n = 0; n < threads; n++)
        {
            int t = scheduled(n, threads, round, seed);
            if (block.fibers[t].done) continue;
            alive++;
            block.current = t;
            ae_switch_context(&block.scheduler_stack, block.fibers[t].stack_pointer);
        }
        if (alive == 0) break;
        if (block.events == before)
        {
            fail(block, "no thread can pass its barrier (a __syncthreads or warp operation that not every thread reaches)");
            break;
        }
    }
    current_block = nullptr;
    for (size_t i = 0; i < GuardBytes; i++)
        if (worker.shared[i] != guard_byte(i))
        {
            fail(block, "write " + std::to_string(GuardBytes - i) + " bytes before the start of dynamic shared memory");
            break;
        }
    for (size_t i = 0; i < GuardBytes; i++)
        if (worker.shared[GuardBytes + shared_bytes + i] != guard_byte(GuardBytes + shared_bytes + i))
        {
            fail(block, "write past the end of dynamic shared memory (" + std::to_string(shared_bytes) + " bytes) at byte "
                + std::to_string(shared_bytes + i));
            break;
        }
    if (block.error.empty()) return "";
    return "block (" + std::to_string(index.x) + ", " + std::to_string(index.y) + ", " + std::to_string(index.z) + "): " + block.error;
}
} // namespace

Registrar::Registrar(const char* name, KernelEntry entry, int threads, int parameter_bytes)
{
    registry().push_back(Kernel{ name, entry, threads, parameter_bytes });
}

const Kernel* find_kernel(const char* name)
{
    for (auto& kernel : registry())
        if (strcmp(kernel.name, name) == 0) return &kernel;
    return nullptr;
}

std::string run_grid(const Kernel& kernel, Dim3 grid, Dim3 block, size_t shared_bytes, const void* parameters)
{
    long total = (long)grid.x * grid.y * grid.z;
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    if (const char* configured = getenv("AE_EMULATOR_THREADS")) cores = std::max(1, atoi(configured));
    long workers = std::min<long>(cores, total);
    std::atomic<long> next{ 0 };
    std::mutex gate;
    std::string first_error;
    auto work = [&]
    {
        Worker worker;
        for (long i; (i = next.fetch_add(1)) < total;)
        {
            Dim3 index{ (unsigned)(i % grid.x), (unsigned)(i / grid.x % grid.y), (unsigned)(i / ((long)grid.x * grid.y)) };
            std::string error = run_block(worker, kernel, index, (int)block.x, shared_bytes, parameters);
            if (!error.empty())
            {
                std::lock_guard<std::mutex> lock(gate);
                if (first_error.empty()) first_error = error;
                next.store(total);
            }
        }
    };
    std::vector<std::thread> pool;
    for (long w = 1; w < workers; w++) pool.emplace_back(work);
    work();
    for (auto& thread : pool) thread.join();
    return first_error;
}

Dim3 thread_index() { return Dim3{ (unsigned)here().current, 0, 0 }; }
Dim3 block_index() { return here().index; }
void* dynamic_shared() { return here().shared; }

void sync_threads()
{
    Block& block = here();
    Fiber& fiber = block.fibers[block.current];
    fiber.barrier_generation = block.generation;
    fiber.at_block_barrier = true;
    wait_at(block, block.arrived, block.generation, block.threads);
    fiber.at_block_barrier = false;
}

uint32_t warp_shuffle_xor(uint32_t value, int lane_mask)
{
    static const char* const Operation = "shfl.sync.bfly";
    enter(Operation).words[0] = value;
    meet(Operation);
    uint32_t result = (uint32_t)warp().slots[(lane() ^ lane_mask) & 31].words[0];
    leave();
    return result;
}

uint32_t warp_shuffle(uint32_t value, int source_lane)
{
    static const char* const Operation = "shfl.sync.idx";
    enter(Operation).words[0] = value;
    meet(Operation);
    uint32_t result = (uint32_t)warp().slots[source_lane & 31].words[0];
    leave();
    return result;
}

// ldmatrix.m8n8.x4.b16: lanes 8i .. 8i + 7 give the row addresses of matrix i. Without .trans lane L receives row L / 4,
// columns 2 (L % 4) and 2 (L % 4) + 1 of each matrix; with .trans the same positions of the transposed matrix.
void warp_load_matrix_x4(uint32_t (&r)[4], const void* address, bool transpose)
{
    static const char* const Plain = "ldmatrix.x4";
    static const char* const Transposed = "ldmatrix.x4.trans";
    const char* operation = transpose ? Transposed : Plain;
    enter(operation).words[0] = (uint64_t)address;
    meet(operation);
    Block& block = here();
    Warp& w = warp();
    for (int l = 0; l < 32; l++)
    {
        auto row = (const void*)w.slots[l].words[0];
        if (!in_shared(block, row, 16) || (uintptr_t)row % 16 != 0)
            fail(block, std::string(operation) + ": lane " + std::to_string(l) + " row address " + describe(row)
                + " is not a 16-byte-aligned row inside the block's shared memory");
    }
    int L = lane();
    uint32_t result[4] = {};
    if (block.error.empty())
        // Each element of the four 8 x 8 matrices goes where its place says; this lane keeps its own registers.
        for (int row = 0; row < 32; row++)
            for (int column = 0; column < 8; column++)
            {
                Place at = place(transpose ? Fragment::LoadMatrixTransposed : Fragment::LoadMatrix, row, column);
                if (at.lane != L) continue;
                uint16_t value = ((const uint16_t*)w.slots[row].words[0])[column]; // lane `row` gave row `row`'s address
                result[at.reg] |= (uint32_t)value << (16 * at.half);
            }
    leave();
    for (int i = 0; i < 4; i++) r[i] = result[i];
}

// Publishes the lane's operands, then computes its four accumulators D(row, column) += sum over k of A(row, k) B(k, column)
// from every lane's registers; products are exact (in double) and the sum is rounded once to fp32. C/D elements are
// (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1) with g = lane / 4 and t = lane % 4, for both shapes below.
// mma.m16n8k16 A (16 x 16, .f16x2 registers a0..a3), B (16 x 8, b0..b1), the f32 accumulator (16 x 8, c0..c3);
// m16n8k8 .tf32 A (16 x 8, a0..a3) and B (8 x 8, b0..b1); ldmatrix x4: matrix i in register i, lane L its row L / 4,
// columns 2 (L % 4) and + 1 (transposed: the same positions of the transposed matrix).
Place place(Fragment fragment, int row, int column)
{
    switch (fragment)
    {
    case Fragment::MmaF16A: return { 4 * (row % 8) + column % 8 / 2, row / 8 + 2 * (column / 8), column % 2 };
    case Fragment::MmaF16B: return { 4 * column + row % 8 / 2, row / 8, row % 2 };
    case Fragment::MmaAccumulator: return { 4 * (row % 8) + column / 2, 2 * (row / 8) + column % 2, 0 };
    case Fragment::MmaTf32A: return { 4 * (row % 8) + column % 4, row / 8 + 2 * (column / 4), 0 };
    case Fragment::MmaTf32B: return { 4 * column + row % 4, row / 4, 0 };
    case Fragment::LoadMatrix: return { 4 * (row % 8) + column / 2, row / 8, column % 2 };
    case Fragment::LoadMatrixTransposed: return { 4 * column + row % 8 / 2, row / 8, row % 2 };
    }
    return { -1, -1, -1 };
}

// The products and the accumulator summed exactly, rounded once (the default model: what a perfect unit computes).
double exact_sum(const double* terms, int count)
{
    double sum = 0;
    for (int i = 0; i < count; i++) sum += terms[i];
    return sum;
}

// The pessimistic model of a tensor core's fp32 accumulation (after Fasi et al., "Numerical behavior of NVIDIA tensor
// cores", 2021): every term is aligned to the largest exponent among them and truncated toward zero to 24 + 3 bits
// there, the aligned terms are summed, and the sum is truncated toward zero to fp32. Non-finite terms sum as IEEE.
float truncated_sum(const double* terms, int count)
{
    double largest = 0;
    for (int i = 0; i < count; i++)
    {
        if (!std::isfinite(terms[i])) return (float)exact_sum(terms, count);
        largest = std::max(largest, std::fabs(terms[i]));
    }
    if (largest == 0) return (float)exact_sum(terms, count);
    double unit = std::ldexp(1.0, std::ilogb(largest) - 23 - 3);
    double sum = 0;
    for (int i = 0; i < count; i++) sum += std::trunc(terms[i] / unit) * unit; // exact: few bits, one exponent
    float rounded = (float)sum;
    if (std::isinf(rounded)) return rounded; // overflow stays infinity, as in the exact model
    if (std::fabs((double)rounded) > std::fabs(sum)) rounded = std::nextafter(rounded, 0.0f); // toward zero
    return rounded;
}

template <int K, class ReadA, class ReadB>
void warp_mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, const char* operation, ReadA read_a, ReadB read_b)
{
    Slot& slot = enter(operation);
    for (int i = 0; i < 4; i++) slot.words[i] = a[i];
    slot.words[4] = b0;
    slot.words[5] = b1;
    meet(operation);
    const Warp& w = warp();
    float result[4];
    bool truncate = truncated_accumulation.load();
    for (int e = 0; e < 4; e++)
    {
        // The accumulator element this lane holds in register e: the inverse of its place, tabulated once.
        static const std::array<std::pair<int, int>, 128> holder = []
        {
            std::array<std::pair<int, int>, 128> table{};
            for (int r = 0; r < 16; r++)
                for (int c = 0; c < 8; c++)
                {
                    Place at = place(Fragment::MmaAccumulator, r, c);
                    table[4 * at.lane + at.reg] = { r, c };
                }
            return table;
        }();
        auto [row, column] = holder[4 * lane() + e];
        double terms[K + 1];
        terms[K] = d[e];
        for (int k = 0; k < K; k++) terms[k] = (double)read_a(w, row, k) * read_b(w, k, column); // exact in double
        result[e] = truncate ? truncated_sum(terms, K + 1) : (float)exact_sum(terms, K + 1);
    }
    leave();
    for (int e = 0; e < 4; e++) d[e] = result[e];
}

// mma.m16n8k16.row.col.f32.{f16,bf16}: A registers (row g, k 2t..2t+1), (g + 8, same), (g, k + 8), (g + 8, k + 8);
// B registers (k 2t..2t+1, column g), (k + 8, column g).
void warp_mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bfloat16)
{
    static const char* const F16 = "mma.m16n8k16.f16";
    static const char* const BF16 = "mma.m16n8k16.bf16";
    warp_mma<16>(d, a, b0, b1, bfloat16 ? BF16 : F16,
        [=](const Warp& w, int row, int k) { Place at = place(Fragment::MmaF16A, row, k); return element((uint32_t)w.slots[at.lane].words[at.reg], at.half, bfloat16); },
        [=](const Warp& w, int k, int column) { Place at = place(Fragment::MmaF16B, k, column); return element((uint32_t)w.slots[at.lane].words[4 + at.reg], at.half, bfloat16); });
}

// mma.m16n8k8.row.col.f32.tf32.tf32.f32: A registers (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4); B registers
// (k t, column g), (k t + 4, column g). Inputs keep their top 19 bits (tf32).
void warp_mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    static const char* const Operation = "mma.m16n8k8.tf32";
    warp_mma<8>(d, a, b0, b1, Operation,
        [](const Warp& w, int row, int k) { Place at = place(Fragment::MmaTf32A, row, k); return as_float((uint32_t)w.slots[at.lane].words[at.reg] & 0xFFFFE000u); },
        [](const Warp& w, int k, int column) { Place at = place(Fragment::MmaTf32B, k, column); return as_float((uint32_t)w.slots[at.lane].words[4 + at.reg] & 0xFFFFE000u); });
}

// A plain global load or store of `bytes` at `address`: false (and the launch fails) outside every allocation.
bool global_access_valid(const void* address, size_t bytes, const char* operation)
{
    if (device_range_valid(address, bytes)) return true;
    fail(here(), std::string(operation) + ": " + describe(address) + " (" + std::to_string(bytes) + " bytes) is outside every device allocation");
    return false;
}

// cp.async.cg.shared.global [shared], [global], copy_bytes, source_bytes: queued in the thread's open group.
void async_copy(void* shared, const void* global, int copy_bytes, int source_bytes)
{
    Block& block = here();
    if (!in_shared(block, shared, copy_bytes) || (uintptr_t)shared % copy_bytes != 0)
        return fail(block, "cp.async: destination " + describe(shared) + " is not an aligned address inside the block's shared memory");
    if ((uintptr_t)global % copy_bytes != 0)
        return fail(block, "cp.async: source " + describe(global) + " is not " + std::to_string(copy_bytes) + "-byte aligned");
    if (source_bytes > 0 && !device_range_valid(global, (size_t)source_bytes))
        return fail(block, "cp.async: source " + describe(global) + " (" + std::to_string(source_bytes)
            + " bytes) is outside every device allocation");
    PendingCopy copy{ (unsigned char*)shared, (const unsigned char*)global, copy_bytes, source_bytes };
    if (eager_copies.load()) land(copy);
    else block.fibers[block.current].open.push_back(copy);
}

void async_commit()
{
    Fiber& fiber = here().fibers[here().current];
    fiber.committed.push_back(std::move(fiber.open));
    fiber.open.clear();
}

void async_wait(int pending_groups)
{
    Fiber& fiber = here().fibers[here().current];
    while ((int)fiber.committed.size() > pending_groups)
    {
        for (const PendingCopy& copy : fiber.committed.front()) land(copy);
        fiber.committed.pop_front();
    }
}

void set_modes(bool eager, unsigned seed, bool truncate)
{
    eager_copies.store(eager);
    schedule_seed.store(seed);
    truncated_accumulation.store(truncate);
}

uint16_t float_to_half(float x)
{
    uint32_t bits = as_bits(x), sign = (bits >> 16) & 0x8000u;
    bits &= 0x7FFFFFFFu;
    if (bits > 0x7F800000u) return 0x7FFF;                      // NaN: the canonical NaN, as cvt produces
    if (bits >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); // 65520 and above round to infinity
    if (bits < 0x38800000u)                                     // below 2^-14: subnormal or zero
        return (uint16_t)(sign | (uint32_t)nearbyintf(as_float(bits) * 16777216.f));
    bits += 0xFFFu + ((bits >> 13) & 1u);                         // round to nearest even at bit 13
    return (uint16_t)(sign | (bits - (112u << 23)) >> 13);
}

uint16_t float_to_bfloat16(float x)
{
    uint32_t bits = as_bits(x);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFF;
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

// As the hardware does it (sm_86 SASS of cvt.rna.tf32.f32: FSETP.GEU |x|, +INF; @!P0 IADD x, 0x1000; LOP3 x & 0xffffe000):
// finite values get half a tf32 unit added to their bits and the low 13 bits cleared (nearest, ties away from zero,
// overflowing to infinity past the largest tf32); infinity and NaN skip the add but are masked all the same, so a NaN
// loses the low 13 bits of its payload, and one whose payload lies only there comes out as infinity.
uint32_t float_to_tf32(float x)
{
    uint32_t bits = as_bits(x);
    if ((bits & 0x7F800000u) == 0x7F800000u) return bits & 0xFFFFE000u;
    return (bits + 0x1000u) & 0xFFFFE000u;
}

// min.NaN.f32 / max.NaN.f32 (PTX ISA, "min"/"max" with .NaN): the canonical NaN when either input is NaN, else the
// smaller / larger, -0 counting below +0.
float min_nan_f32(float a, float b)
{
    if (a != a || b != b) return as_float(0x7FFFFFFFu);
    if (a == b) return (as_bits(a) & 0x80000000u) ? a : b;
    return a < b ? a : b;
}
float max_nan_f32(float a, float b)
{
    if (a != a || b != b) return as_float(0x7FFFFFFFu);
    if (a == b) return (as_bits(a) & 0x80000000u) ? b : a;
    return a > b ? a : b;
}

// ex2.approx.ftz.f32 with the ISA's error bound taken pessimistically. The ISA allows 2 ulps from the correctly rounded
// result and flushes subnormal inputs and results to zero, with -inf -> +0, +inf -> +inf and NaN -> NaN; the
// hardware's exact bits are unspecified, so the emulator answers exactly 2 ulps off the correctly rounded power, up
// when the (flushed) input's last bit is 1 and down otherwise: a kernel that needs exact powers fails here rather
// than on a GPU.
float ex2_approx_ftz_f32(float x)
{
    if (x != x) return as_float(0x7FFFFFFFu);
    if ((as_bits(x) & 0x7F800000u) == 0) x = 0.f; // subnormal input: flushed
    float r = (float)exp2((double)x);
    const float smallest_normal = 1.17549435e-38f;
    if (r < smallest_normal) return 0.f;          // subnormal result: flushed (+0, as 2^x > 0)
    if (r == as_float(0x7F800000u)) return r;
    uint32_t bits = (as_bits(x) & 1u) ? as_bits(r) + 2u : as_bits(r) - 2u;
    r = as_float(bits);
    return r < smallest_normal ? 0.f : r;
}
} // namespace ae_emu
