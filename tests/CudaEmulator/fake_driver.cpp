// The CUDA driver API (the cu* calls the bindings make, with cuda.h's signatures and status codes) over the CPU:
// three emulated devices (0: sm_80 like an A100, 1: sm_86 like an RTX 3090, 2: sm_90 like an H100; they differ in
// what a kernel variant must fit, the opt-in shared memory per block: 163, 99 and 227 KiB) whose "device memory" is
// host memory in one registry, whose modules resolve kernels by name among the kernels compiled into this library,
// and whose launches run the grid on the CPU. It checks what a real driver checks and a careless host gets wrong:
// cuInit first, a current context on the calling thread, a CUBIN built for the device's architecture, copies inside
// live allocations, frees of live pointers only, block sizes, and dynamic shared memory above 48 KiB only after
// cuFuncSetAttribute, never above the device's opt-in limit. ae_emu_* exports let tests ask for live allocations and the last launch failure.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "emulator_internal.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum : CUresult
{
    Success = 0,
    InvalidValue = 1,
    OutOfMemory = 2,
    NotInitialized = 3,
    InvalidImage = 200,
    NoBinaryForGpu = 209,
    InvalidContext = 201,
    InvalidHandle = 400,
    NotFound = 500,
    IllegalAddress = 700,
    LaunchFailed = 719,
};

namespace
{
constexpr int SharedDefault = 48 * 1024;

// The emulated devices, by ordinal. Shared memory figures are the CUDA programming guide's per compute capability.
struct DeviceProfile { const char* name; int major, minor, multiprocessors, shared_per_multiprocessor, shared_opt_in; };
// Device 0 is sm_80, the target CI's NVRTC resource checks compile for, so the backend's compiles there are theirs.
constexpr DeviceProfile Devices[] = {
    { "AttentionEngine CUDA emulator (sm_80, CPU)", 8, 0, 108, 164 * 1024, 163 * 1024 },
    { "AttentionEngine CUDA emulator (sm_86, CPU)", 8, 6, 82, 100 * 1024, 99 * 1024 },
    { "AttentionEngine CUDA emulator (sm_90, CPU)", 9, 0, 132, 228 * 1024, 227 * 1024 },
};
constexpr int DeviceCount = sizeof(Devices) / sizeof(Devices[0]);

struct Module { std::set<struct Function*> functions; std::string image; int device; };
struct Function { const ae_emu::Kernel* kernel; int max_dynamic_shared; Module* module; };
struct Context { int retained; int device; };
struct Event { std::chrono::steady_clock::time_point time; bool recorded; };

std::mutex gate;
bool initialized = false;
Context primary[DeviceCount] = { { 0, 0 }, { 0, 1 }, { 0, 2 } };
thread_local Context* current = nullptr;
std::map<uintptr_t, size_t> allocations;
std::set<void*> host_allocations;
std::set<Module*> modules;
std::set<void*> streams, events;
std::string last_launch_error;
long launches = 0;

// Device memory: each allocation sits between two guard regions, and the allocation and its guards start as a NaN
// pattern (halves of 0x7FC0: NaN read as fp32, fp16 or bf16; random heap bytes or 0xA5 would read as finite numbers
// and pass unnoticed). A kernel that reads device memory nobody wrote, or just past either end of a buffer, gets NaN
// in its results; a write into a guard fails the launch that made it.
constexpr size_t DeviceGuard = 256;

size_t padded(size_t bytes) { return (bytes + 255) / 256 * 256; }

unsigned char pattern_byte(uintptr_t address) { return address % 2 == 0 ? 0xC0 : 0x7F; }

void fill_pattern(unsigned char* p, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++) p[i] = pattern_byte((uintptr_t)(p + i));
}

// The first byte of [p, p + bytes) that no longer holds the pattern, or nullptr.
const unsigned char* damaged(const unsigned char* p, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        if (p[i] != pattern_byte((uintptr_t)(p + i))) return p + i;
    return nullptr;
}

// A write into the guards of a live allocation (the gate held): which one and where, or "".
std::string guard_damage_locked()
{
    for (const auto& [address, bytes] : allocations)
    {
        auto* user = (const unsigned char*)address;
        if (const unsigned char* at = damaged(user - DeviceGuard, DeviceGuard))
            return "write " + std::to_string(user - at) + " bytes before the start of the " + std::to_string(bytes) + "-byte device allocation";
        if (const unsigned char* at = damaged(user + bytes, padded(bytes) - bytes + DeviceGuard))
            return "write " + std::to_string(at - user - (long)bytes) + " bytes past the end of the " + std::to_string(bytes) + "-byte device allocation";
    }
    return "";
}

bool ready(CUresult& status)
{
    if (!initialized) status = NotInitialized;
    else if (current == nullptr || current->retained == 0) status = InvalidContext;
    else return true;
    return false;
}

bool range_valid_locked(uintptr_t address, size_t bytes)
{
    auto it = allocations.upper_bound(address);
    if (it == allocations.begin()) return false;
    --it;
    return address >= it->first && address + bytes <= it->first + it->second;
}

// The size of an ELF image (a CUBIN), from its section header table, or 0 for anything else (a fatbin).
size_t elf_size(const unsigned char* image)
{
    if (memcmp(image, "\x7f" "ELF", 4) != 0 || image[4] != 2) return 0;
    uint64_t section_offset;
    uint16_t entry_size, entries;
    memcpy(&section_offset, image + 0x28, 8);
    memcpy(&entry_size, image + 0x3A, 2);
    memcpy(&entries, image + 0x3C, 2);
    return (size_t)(section_offset + (uint64_t)entry_size * entries);
}
// The SM a CUBIN was built for (80 for sm_80), or 0 when the image does not say in a form known here. CUDA ELF
// images carry OS ABI 0x33; up to ABI version 7 (NVRTC 11-12) the low byte of e_flags is the SM.
int cubin_sm(const unsigned char* image)
{
    if (!elf_size(image) || image[7] != 0x33 || image[8] != 7) return 0;
    uint32_t flags;
    memcpy(&flags, image + 0x30, 4);
    return (int)(flags & 0xff);
}
} // namespace

namespace ae_emu
{
bool device_range_valid(const void* address, size_t bytes)
{
    std::lock_guard<std::mutex> lock(gate);
    return range_valid_locked((uintptr_t)address, bytes);
}
} // namespace ae_emu

EXPORT CUresult cuInit(unsigned flags)
{
    if (flags != 0) return InvalidValue;
    std::lock_guard<std::mutex> lock(gate);
    initialized = true;
    return Success;
}

EXPORT CUresult cuDriverGetVersion(int* version)
{
    if (!version) return InvalidValue;
    *version = 12080;
    return Success;
}

EXPORT CUresult cuGetErrorName(CUresult status, const char** name)
{
    if (!name) return InvalidValue;
    switch (status)
    {
    case Success: *name = "CUDA_SUCCESS"; return Success;
    case InvalidValue: *name = "CUDA_ERROR_INVALID_VALUE"; return Success;
    case OutOfMemory: *name = "CUDA_ERROR_OUT_OF_MEMORY"; return Success;
    case NotInitialized: *name = "CUDA_ERROR_NOT_INITIALIZED"; return Success;
    case InvalidImage: *name = "CUDA_ERROR_INVALID_IMAGE"; return Success;
    case NoBinaryForGpu: *name = "CUDA_ERROR_NO_BINARY_FOR_GPU"; return Success;
    case InvalidContext: *name = "CUDA_ERROR_INVALID_CONTEXT"; return Success;
    case InvalidHandle: *name = "CUDA_ERROR_INVALID_HANDLE"; return Success;
    case NotFound: *name = "CUDA_ERROR_NOT_FOUND"; return Success;
    case IllegalAddress: *name = "CUDA_ERROR_ILLEGAL_ADDRESS"; return Success;
    case LaunchFailed: *name = "CUDA_ERROR_LAUNCH_FAILED"; return Success;
    default: return InvalidValue;
    }
}

EXPORT CUresult cuDeviceGetCount(int* count)
{
    if (!count) return InvalidValue;
    if (!initialized) return NotInitialized;
    *count = DeviceCount;
    return Success;
}

static bool known_device(int device) { return device >= 0 && device < DeviceCount; }

EXPORT CUresult cuDeviceGet(int* device, int ordinal)
{
    if (!device) return InvalidValue;
    if (!initialized) return NotInitialized;
    if (!known_device(ordinal)) return InvalidValue;
    *device = ordinal;
    return Success;
}

EXPORT CUresult cuDeviceGetName(char* name, int length, int device)
{
    if (!name || length <= 0 || !known_device(device)) return InvalidValue;
    snprintf(name, (size_t)length, "%s", Devices[device].name);
    return Success;
}

EXPORT CUresult cuDeviceGetAttribute(int* value, int attribute, int device)
{
    if (!value || !known_device(device)) return InvalidValue;
    const DeviceProfile& d = Devices[device];
    switch (attribute)
    {
    case 1: *value = 1024; return Success;                        // max threads per block
    case 8: *value = SharedDefault; return Success;               // max shared memory per block
    case 10: *value = 32; return Success;                         // warp size
    case 16: *value = d.multiprocessors; return Success;          // multiprocessors
    case 75: *value = d.major; return Success;                    // compute capability major
    case 76: *value = d.minor; return Success;                    // compute capability minor
    case 81: *value = d.shared_per_multiprocessor; return Success; // max shared memory per multiprocessor
    case 97: *value = d.shared_opt_in; return Success;            // max shared memory per block, opt-in
    default: return InvalidValue;
    }
}

EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, int device)
{
    if (!bytes || !known_device(device)) return InvalidValue;
    *bytes = (size_t)16 << 30;
    return Success;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(void** context, int device)
{
    if (!context || !known_device(device)) return InvalidValue;
    std::lock_guard<std::mutex> lock(gate);
    if (!initialized) return NotInitialized;
    primary[device].retained++;
    *context = &primary[device];
    return Success;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(int device)
{
    if (!known_device(device)) return InvalidValue;
    std::lock_guard<std::mutex> lock(gate);
    if (primary[device].retained == 0) return InvalidContext;
    primary[device].retained--;
    return Success;
}

EXPORT CUresult cuCtxSetCurrent(void* context)
{
    if (context != nullptr && (context < (void*)primary || context >= (void*)(primary + DeviceCount))) return InvalidContext;
    current = static_cast<Context*>(context);
    return Success;
}

EXPORT CUresult cuCtxSynchronize()
{
    CUresult status;
    return ready(status) ? Success : status;
}

EXPORT CUresult cuStreamCreate(void** stream, unsigned flags)
{
    CUresult status;
    if (!ready(status)) return status;
    if (!stream || flags > 1) return InvalidValue;
    std::lock_guard<std::mutex> lock(gate);
    *stream = malloc(1);
    streams.insert(*stream);
    return Success;
}

EXPORT CUresult cuStreamDestroy_v2(void* stream)
{
    std::lock_guard<std::mutex> lock(gate);
    if (!streams.erase(stream)) return InvalidHandle;
    free(stream);
    return Success;
}

EXPORT CUresult cuStreamSynchronize(void* stream)
{
    std::lock_guard<std::mutex> lock(gate);
    return stream == nullptr || streams.count(stream) ? Success : InvalidHandle;
}

EXPORT CUresult cuEventCreate(void** event, unsigned flags)
{
    CUresult status;
    if (!ready(status)) return status;
    if (!event) return InvalidValue;
    (void)flags;
    std::lock_guard<std::mutex> lock(gate);
    auto* created = new Event{ {}, false };
    events.insert(created);
    *event = created;
    return Success;
}

EXPORT CUresult cuEventRecord(void* event, void* stream)
{
    std::lock_guard<std::mutex> lock(gate);
    if (!events.count(event) || (stream && !streams.count(stream))) return InvalidHandle;
    auto* e = static_cast<Event*>(event);
    e->time = std::chrono::steady_clock::now();
    e->recorded = true;
    return Success;
}

EXPORT CUresult cuEventSynchronize(void* event)
{
    std::lock_guard<std::mutex> lock(gate);
    return events.count(event) ? Success : InvalidHandle;
}

EXPORT CUresult cuEventElapsedTime(float* milliseconds, void* start, void* end)
{
    std::lock_guard<std::mutex> lock(gate);
    if (!milliseconds) return InvalidValue;
    if (!events.count(start) || !events.count(end)) return InvalidHandle;
    auto *a = static_cast<Event*>(start), *b = static_cast<Event*>(end);
    if (!a->recorded || !b->recorded) return InvalidHandle;
    *milliseconds = std::chrono::duration<float, std::milli>(b->time - a->time).count();
    return Success;
}

EXPORT CUresult cuEventDestroy_v2(void* event)
{
    std::lock_guard<std::mutex> lock(gate);
    if (!events.erase(event)) return InvalidHandle;
    delete static_cast<Event*>(event);
    return Success;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* pointer, size_t bytes)
{
    CUresult status;
    if (!ready(status)) return status;
    if (!pointer || bytes == 0) return InvalidValue;
    size_t total = DeviceGuard + padded(bytes) + DeviceGuard;
    auto* memory = static_cast<unsigned char*>(aligned_alloc(256, total));
    if (!memory) return OutOfMemory;
    fill_pattern(memory, total);
    std::lock_guard<std::mutex> lock(gate);
    allocations[(uintptr_t)(memory + DeviceGuard)] = bytes;
    *pointer = (CUdeviceptr)(uintptr_t)(memory + DeviceGuard);
    return Success;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr pointer)
{
    CUresult status;
    if (!ready(status)) return status;
    std::lock_guard<std::mutex> lock(gate);
    if (!allocations.erase((uintptr_t)pointer)) return InvalidValue;
    free((unsigned char*)(uintptr_t)pointer - DeviceGuard);
    return Success;
}

EXPORT CUresult cuMemAllocHost_v2(void** pointer, size_t bytes)
{
    CUresult status;
    if (!ready(status)) return status;
    if (!pointer || bytes == 0) return InvalidValue;
    std::lock_guard<std::mutex> lock(gate);
    *pointer = malloc(bytes);
    host_allocations.insert(*pointer);
    return Success;
}

EXPORT CUresult cuMemFreeHost(void* pointer)
{
    std::lock_guard<std::mutex> lock(gate);
    if (!host_allocations.erase(pointer)) return InvalidValue;
    free(pointer);
    return Success;
}

// memcpy where the device side, `device`, lies inside one live allocation.
static CUresult copy(void* destination, const void* source, size_t bytes, uintptr_t device)
{
    CUresult status;
    if (!ready(status)) return status;
    if (!destination || !source) return InvalidValue;
    {
        std::lock_guard<std::mutex> lock(gate);
        if (!range_valid_locked(device, bytes)) return InvalidValue;
    }
    memcpy(destination, source, bytes);
    return Success;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr destination, const void* source, size_t bytes)
{
    return copy((void*)(uintptr_t)destination, source, bytes, (uintptr_t)destination);
}

EXPORT CUresult cuMemcpyDtoH_v2(void* destination, CUdeviceptr source, size_t bytes)
{
    return copy(destination, (const void*)(uintptr_t)source, bytes, (uintptr_t)source);
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr destination, const void* source, size_t bytes, void* stream)
{
    (void)stream;
    return cuMemcpyHtoD_v2(destination, source, bytes);
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void* destination, CUdeviceptr source, size_t bytes, void* stream)
{
    (void)stream;
    return cuMemcpyDtoH_v2(destination, source, bytes);
}

EXPORT CUresult cuMemsetD8_v2(CUdeviceptr destination, unsigned char value, size_t count)
{
    CUresult status;
    if (!ready(status)) return status;
    {
        std::lock_guard<std::mutex> lock(gate);
        if (!range_valid_locked((uintptr_t)destination, count)) return InvalidValue;
    }
    memset((void*)(uintptr_t)destination, value, count);
    return Success;
}

EXPORT CUresult cuModuleLoadData(void** module, const void* image)
{
    CUresult status;
    if (!ready(status)) return status;
    if (!module || !image) return InvalidValue;
    auto* bytes = static_cast<const unsigned char*>(image);
    // SASS runs on its own major version at the same or a later minor one (sm_80 code on an sm_86 device, not sm_86
    // code on sm_80 nor sm_80 code on sm_90), as the driver refuses it.
    const DeviceProfile& target = Devices[current->device];
    if (int sm = cubin_sm(bytes); sm != 0 && (sm / 10 != target.major || sm % 10 > target.minor)) return NoBinaryForGpu;
    auto* loaded = new Module();
    loaded->device = current->device;
    // A CUBIN's bytes are kept so that a function resolves only if the image really holds its name.
    if (size_t size = elf_size(bytes)) loaded->image.assign(reinterpret_cast<const char*>(bytes), size);
    std::lock_guard<std::mutex> lock(gate);
    modules.insert(loaded);
    *module = loaded;
    return Success;
}

EXPORT CUresult cuModuleUnload(void* module)
{
    std::lock_guard<std::mutex> lock(gate);
    auto* m = static_cast<Module*>(module);
    if (!modules.erase(m)) return InvalidHandle;
    for (Function* f : m->functions) delete f;
    delete m;
    return Success;
}

EXPORT CUresult cuModuleGetFunction(void** function, void* module, const char* name)
{
    CUresult status;
    if (!ready(status)) return status;
    if (!function || !name) return InvalidValue;
    std::lock_guard<std::mutex> lock(gate);
    auto* m = static_cast<Module*>(module);
    if (!modules.count(m)) return InvalidHandle;
    const ae_emu::Kernel* kernel = ae_emu::find_kernel(name);
    if (!kernel || (!m->image.empty() && m->image.find(name) == std::string::npos)) return NotFound;
    auto* f = new Function{ kernel, SharedDefault, m };
    m->functions.insert(f);
    *function = f;
    return Success;
}

static bool live(Function* f)
{
    for (Module* m : modules)
        if (m->functions.count(f)) return true;
    return false;
}

EXPORT CUresult cuFuncGetAttribute(int* value, int attribute, void* function)
{
    std::lock_guard<std::mutex> lock(gate);
    auto* f = static_cast<Function*>(function);
    if (!value) return InvalidValue;
    if (!live(f)) return InvalidHandle;
    switch (attribute)
    {
    case 0: *value = f->kernel->threads; return Success;
    case 1: *value = 0; return Success;
    case 4: *value = 128; return Success;
    case 8: *value = f->max_dynamic_shared; return Success;
    default: return InvalidValue;
    }
}

EXPORT CUresult cuFuncSetAttribute(void* function, int attribute, int value)
{
    std::lock_guard<std::mutex> lock(gate);
    auto* f = static_cast<Function*>(function);
    if (!live(f)) return InvalidHandle;
    if (attribute != 8 || value < 0 || value > Devices[f->module->device].shared_opt_in) return InvalidValue;
    f->max_dynamic_shared = value;
    return Success;
}

EXPORT CUresult cuLaunchKernel(void* function, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block_x,
    unsigned block_y, unsigned block_z, unsigned shared_bytes, void* stream, void** parameters, void** extra)
{
    CUresult status;
    if (!ready(status)) return status;
    const ae_emu::Kernel* kernel;
    {
        std::lock_guard<std::mutex> lock(gate);
        auto* f = static_cast<Function*>(function);
        if (!live(f) || (stream && !streams.count(stream))) return InvalidHandle;
        if (grid_x == 0 || grid_y == 0 || grid_z == 0 || grid_x > 0x7FFFFFFFu || grid_y > 65535 || grid_z > 65535) return InvalidValue;
        // The emulator runs one-dimensional blocks of whole warps, up to the kernel's launch bounds.
        if (block_y != 1 || block_z != 1 || block_x == 0 || block_x % 32 != 0 || (int)block_x > f->kernel->threads) return InvalidValue;
        if ((int)shared_bytes > f->max_dynamic_shared) return InvalidValue;
        if (!parameters || !parameters[0] || extra) return InvalidValue;
        kernel = f->kernel;
        launches++;
    }
    std::vector<unsigned char> by_value(static_cast<const unsigned char*>(parameters[0]),
        static_cast<const unsigned char*>(parameters[0]) + kernel->parameter_bytes);
    std::string error = ae_emu::run_grid(*kernel, { grid_x, grid_y, grid_z }, { block_x, 1, 1 }, shared_bytes, by_value.data());
    std::lock_guard<std::mutex> lock(gate);
    if (error.empty()) error = guard_damage_locked();
    last_launch_error = error.empty() ? "" : std::string(kernel->name) + ": " + error;
    if (error.empty()) return Success;
    if (getenv("AE_EMULATOR_VERBOSE")) fprintf(stderr, "cuda emulator: %s\n", last_launch_error.c_str());
    return error.find("barrier") != std::string::npos || error.find("warp operations") != std::string::npos ? LaunchFailed : IllegalAddress;
}

// For tests: device allocations not yet freed, launches so far, and the last launch's failure ("" when it ran clean).
EXPORT long ae_emu_live_allocations()
{
    std::lock_guard<std::mutex> lock(gate);
    return (long)allocations.size();
}

// For tests: where element (row, column) of a warp operand lives (ae_emu::place), fragment as ae_emu::Fragment.
EXPORT void ae_emu_fragment_place(int fragment, int row, int column, int* lane, int* reg, int* half)
{
    ae_emu::Place at = ae_emu::place((ae_emu::Fragment)fragment, row, column);
    *lane = at.lane;
    *reg = at.reg;
    *half = at.half;
}

// For tests: the emulator's float operations (cvt.rna.tf32.f32, min.NaN.f32, max.NaN.f32, ex2.approx.ftz.f32) on
// floats given and returned as bits.
static float float_of(unsigned bits)
{
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static unsigned bits_of(float x)
{
    unsigned bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

EXPORT unsigned ae_emu_cvt_rna_tf32(unsigned bits) { return ae_emu::float_to_tf32(float_of(bits)); }
EXPORT unsigned ae_emu_min_nan(unsigned a, unsigned b) { return bits_of(ae_emu::min_nan_f32(float_of(a), float_of(b))); }
EXPORT unsigned ae_emu_max_nan(unsigned a, unsigned b) { return bits_of(ae_emu::max_nan_f32(float_of(a), float_of(b))); }
EXPORT unsigned ae_emu_ex2_approx_ftz(unsigned input) { return bits_of(ae_emu::ex2_approx_ftz_f32(float_of(input))); }

EXPORT void ae_emu_set_modes(int eager_copies, unsigned schedule_seed, int truncated_accumulation)
{
    ae_emu::set_modes(eager_copies != 0, schedule_seed, truncated_accumulation != 0);
}

EXPORT long ae_emu_launches()
{
    std::lock_guard<std::mutex> lock(gate);
    return launches;
}

EXPORT const char* ae_emu_last_launch_error()
{
    std::lock_guard<std::mutex> lock(gate);
    static thread_local std::string copy;
    copy = last_launch_error;
    return copy.c_str();
}
