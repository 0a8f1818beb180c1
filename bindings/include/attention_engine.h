/*
 * attention_engine.h: the C ABI of AttentionEngine (libattention_engine), the single source of that ABI.
 *
 * Fused scaled-dot-product attention, softmax(scale * Q K^T + bias, masked) V, over tensors described by DLPack's
 * DLTensor (the struct PyTorch, JAX, CuPy and NumPy exchange). Logical order is PyTorch SDPA's:
 *   q       [batch, query_heads, Lq, D]        k [batch, kv_heads, Lk, D]      v [batch, kv_heads, Lk, Dv]
 *   output  [batch, query_heads, Lq, Dv]       lse [batch, query_heads, Lq] (float32)
 * with any strides (in elements, as DLPack defines them; NULL strides = compact row-major), so FlashAttention's
 * [B, S, H, D] memory is a strided view, never a copy. query_heads must be a multiple of kv_heads (GQA/MQA).
 *
 * Contracts (the same as the managed API, which these functions call; there is one implementation):
 *   - Every function returns a status. Errors never cross this boundary as exceptions or crashes; the message of
 *     the last failing call on the calling thread is ae_last_error(), with the text the managed exception carries.
 *   - Inputs are validated before any kernel runs: a rejected call has written nothing.
 *   - A row with no visible key outputs zeros and LSE = -inf, never NaN. A hidden key (mask, keep-mask false,
 *     -inf bias) never influences a row, whatever its K, V or bias hold.
 *   - Results are bitwise identical for any thread count and for concurrent calls from several threads.
 *   - Nothing is copied where the layout allows: CPU tensors are read and written where they are.
 *
 * Devices: kDLCPU (and kDLCUDAHost, pinned host memory) run on the CPU backends. kDLCUDA tensors run on the CUDA
 * backend when it is available on this machine; otherwise the call returns AE_ERROR_BACKEND_UNAVAILABLE with the
 * reason. Element types: float32, float16, bfloat16 for q/k/v/output (all the same), float32 for bias, lse and
 * weights, bool (1 byte) for the keep-mask.
 */
#ifndef ATTENTION_ENGINE_H_
#define ATTENTION_ENGINE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define AE_API __declspec(dllimport)
#else
#define AE_API
#endif

/* ---- DLPack 1.x ABI (declared here from the DLPack specification; layout-compatible with dlpack.h 1.0/1.1) ---- */
#ifndef DLPACK_MAJOR_VERSION
#define DLPACK_MAJOR_VERSION 1
#define DLPACK_MINOR_VERSION 1

typedef struct {
  uint32_t major;
  uint32_t minor;
} DLPackVersion;

typedef enum {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,
  kDLOpenCL = 4,
  kDLVulkan = 7,
  kDLMetal = 8,
  kDLVPI = 9,
  kDLROCM = 10,
  kDLROCMHost = 11,
  kDLExtDev = 12,
  kDLCUDAManaged = 13,
  kDLOneAPI = 14,
  kDLWebGPU = 15,
  kDLHexagon = 16,
  kDLMAIA = 17
} DLDeviceType;

typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;

typedef enum {
  kDLInt = 0U,
  kDLUInt = 1U,
  kDLFloat = 2U,
  kDLOpaqueHandle = 3U,
  kDLBfloat = 4U,
  kDLComplex = 5U,
  kDLBool = 6U
} DLDataTypeCode;

typedef struct {
  uint8_t code;   /* a DLDataTypeCode */
  uint8_t bits;
  uint16_t lanes; /* 1 for every tensor this library takes */
} DLDataType;

typedef struct {
  void* data;           /* start of the allocation; the first element is at (char*)data + byte_offset */
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;       /* ndim lengths */
  int64_t* strides;     /* ndim strides in elements, or NULL for compact row-major */
  uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensor* self);
} DLManagedTensor;

#define DLPACK_FLAG_BITMASK_READ_ONLY (1UL << 0UL)
#define DLPACK_FLAG_BITMASK_IS_COPIED (1UL << 1UL)

typedef struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
} DLManagedTensorVersioned;
#endif /* DLPACK_MAJOR_VERSION */

/* ---- Versions ---- */
#define AE_VERSION_MAJOR 0
#define AE_VERSION_MINOR 1
#define AE_VERSION_PATCH 0
/* Bumped on any change to a struct layout, an enum value or a function signature of this header. */
#define AE_ABI_VERSION 1

/* ---- Status codes ---- */
typedef enum {
  AE_OK = 0,
  AE_ERROR_INVALID_ARGUMENT = 1,    /* shapes, strides, ranks, option values, aliasing: the message names which */
  AE_ERROR_NULL_POINTER = 2,        /* a required pointer (tensor, data, shape) is NULL */
  AE_ERROR_UNSUPPORTED_DTYPE = 3,   /* an element type this tensor cannot have, or q/k/v/output types differ */
  AE_ERROR_UNSUPPORTED_DEVICE = 4,  /* a device type other than CPU, CUDA host or CUDA, or mixed devices */
  AE_ERROR_NOT_SUPPORTED = 5,       /* a valid option the chosen backend cannot honour (the message names it) */
  AE_ERROR_BACKEND_UNAVAILABLE = 6, /* the backend asked for (or CUDA, for kDLCUDA tensors) cannot run here, and why */
  AE_ERROR_ABI_MISMATCH = 7,        /* the caller was compiled against an incompatible header */
  AE_ERROR_OUT_OF_MEMORY = 8,
  AE_ERROR_INTERNAL = 9             /* a bug: please report the message */
} ae_status;

/* ---- Options ---- */
/* Positional mask terms, combined with |; every term uses ae_options.alignment. */
#define AE_MASK_NONE 0u
#define AE_MASK_CAUSAL 1u /* query i sees keys at or before its own position */
#define AE_MASK_WINDOW 2u /* query i sees keys from window_left before to window_right after its position */

typedef enum {
  AE_ALIGN_TOP_LEFT = 0,    /* query i sits at key position i (PyTorch's is_causal) */
  AE_ALIGN_BOTTOM_RIGHT = 1 /* the last query sits at the last key (FlashAttention's causal when Lq != Lk; decode) */
} ae_alignment;

typedef enum {
  AE_BACKEND_AUTO = 0,      /* the best available backend that can serve the call (CPU tensors: Cpu) */
  AE_BACKEND_CPU = 1,       /* flash-style tiled C# SIMD kernels, multi-threaded */
  AE_BACKEND_REFERENCE = 2, /* the float64 oracle: plain loops, slow on purpose */
  AE_BACKEND_CUDA = 3       /* hand-written CUDA C++ (sm_80+); host tensors are copied to the GPU and back */
} ae_backend;

/* Pass NULL for the defaults, or start from ae_options_default(). Unknown trailing bytes (a newer header's fields)
   must be zero: a library that does not know a field refuses a call that sets it instead of ignoring it. */
typedef struct {
  uint32_t struct_size;     /* sizeof(ae_options) as the caller compiled it */
  uint32_t mask;            /* AE_MASK_* terms */
  int32_t alignment;        /* an ae_alignment, for every mask term */
  int32_t has_scale;        /* nonzero: multiply Q.K by scale; zero: by 1/sqrt(D) */
  float scale;
  int32_t max_threads;      /* most threads a call may use; 0 = all cores. Results do not depend on it */
  int64_t window_left;      /* AE_MASK_WINDOW: keys before the query's position it sees; -1 = unbounded */
  int64_t window_right;     /* AE_MASK_WINDOW: keys after it; -1 = unbounded; 0 with a left extent = causal local */
  const DLTensor* bias;     /* float32 additive bias broadcastable to [B|1, H|1, Lq|1, Lk], ndim 1..4; -inf hides */
  const DLTensor* keep_mask;/* bool keep-mask (true = visible), same broadcasting; NULL = none */
  DLTensor* lse;            /* forward: float32 [B, H, Lq] destination of the natural-log logsumexp; NULL = none */
  DLTensor* weights;        /* forward: float32 [B, H, Lq, Lk] destination of the probabilities; NULL = none */
  int32_t backend;          /* an ae_backend */
  int32_t reserved;         /* must be 0 */
  /* Appended after the first 80 bytes (a library reads an older caller's smaller struct with these as 0). */
  double dropout;           /* training: chance in [0, 1) that a probability is dropped (kept ones scale by 1/(1-p)) */
  uint64_t dropout_seed;    /* the mask's key: the same seed, offset and call draw the same mask (forward and backward) */
  uint64_t dropout_offset;  /* the mask's stream within the seed: advance it once per training step */
  int32_t dropout_in_weights; /* nonzero: options->weights receives the probabilities after dropout */
  int32_t reserved2;        /* must be 0 */
} ae_options;

static inline ae_options ae_options_default(void) {
  ae_options options;
  options.struct_size = (uint32_t)sizeof(ae_options);
  options.mask = AE_MASK_NONE;
  options.alignment = AE_ALIGN_TOP_LEFT;
  options.has_scale = 0;
  options.scale = 0.0f;
  options.max_threads = 0;
  options.window_left = -1;
  options.window_right = -1;
  options.bias = NULL;
  options.keep_mask = NULL;
  options.lse = NULL;
  options.weights = NULL;
  options.backend = AE_BACKEND_AUTO;
  options.reserved = 0;
  options.dropout = 0.0;
  options.dropout_seed = 0;
  options.dropout_offset = 0;
  options.dropout_in_weights = 0;
  options.reserved2 = 0;
  return options;
}

/* ---- Functions ---- */

/* The library's version, e.g. "0.1.0". A static string. */
AE_API const char* ae_version(void);

/* The ABI version the library implements (AE_ABI_VERSION of the header it was built with). */
AE_API uint32_t ae_abi_version(void);

/* AE_OK when a caller compiled with this header can use the library; AE_ERROR_ABI_MISMATCH (and the reason) when
   the ABI versions differ, DLTensor's size differs, or the caller's ae_options is smaller than the first header's (80 bytes). A larger
   ae_options (a newer header that appended fields) passes: each call then refuses a set field the library does not
   know. Call it once, through AE_CHECK_ABI(). */
AE_API ae_status ae_check_abi(uint32_t abi_version, size_t options_size, size_t dltensor_size);
#define AE_CHECK_ABI() ae_check_abi(AE_ABI_VERSION, sizeof(ae_options), sizeof(DLTensor))

/* The message of the last call on this thread that failed (UTF-8, never NULL; "" before any failure). It stays
   valid until the next failing call on this thread. */
AE_API const char* ae_last_error(void);

/* The enum name of a status, e.g. "AE_ERROR_INVALID_ARGUMENT". A static string. */
AE_API const char* ae_status_name(ae_status status);

/* AE_OK when the backend can run on this machine; otherwise AE_ERROR_BACKEND_UNAVAILABLE and ae_last_error() says
   why (no GPU, no driver...). */
AE_API ae_status ae_backend_available(ae_backend backend);

/* output = attention(q, k, v). options may be NULL. */
AE_API ae_status ae_forward(const DLTensor* q, const DLTensor* k, const DLTensor* v, DLTensor* output,
                            const ae_options* options);

/* Gradients of a loss L given d_output = dL/d(output) of a forward call with the same options, its output and its
   float32 lse [B, H, Lq]. d_q, d_k, d_v (the shapes and element type of q, k, v) are overwritten. d_bias (float32,
   the shape of options->bias) receives dL/d(bias), summed over the dimensions the bias broadcasts over; NULL when
   not wanted. options->lse and options->weights are not read. CPU tensors only. */
AE_API ae_status ae_backward(const DLTensor* q, const DLTensor* k, const DLTensor* v, const DLTensor* output,
                             const DLTensor* lse, const DLTensor* d_output, DLTensor* d_q, DLTensor* d_k,
                             DLTensor* d_v, const ae_options* options, DLTensor* d_bias);

#ifdef __cplusplus
}
#endif

#endif /* ATTENTION_ENGINE_H_ */
