/* Host tensors, a naive float64 attention (forward and backward) and check counting for the C ABI tests.
   Everything here is written from the definition of attention, independently of the library. */
#ifndef AE_TEST_HELPERS_H_
#define AE_TEST_HELPERS_H_

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_engine.h"

extern int checks_passed, checks_failed;
#define CHECK(cond, ...)                                         \
  do {                                                           \
    if (cond) {                                                  \
      checks_passed++;                                           \
    } else {                                                     \
      checks_failed++;                                           \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                \
      printf(__VA_ARGS__);                                       \
      printf("\n");                                              \
    }                                                            \
  } while (0)

typedef enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 } dtype_t;
extern const char* dtype_names[3];

/* A 1..4-d host tensor: storage in its DLPack element type, a DLTensor over it with explicit strides. */
typedef struct {
  DLTensor t;
  int64_t shape[4];
  int64_t strides[4];
  void* storage;
  size_t storage_elements;
  int element_size;
} tensor_t;

/* Element types: q/k/v-like tensors take a dtype_t; masks and LSE are float32 or bool. */
DLDataType dl_type(dtype_t dtype);
DLDataType dl_float32(void);
DLDataType dl_bool(void);

/* A compact row-major tensor; token_major (4-d only) stores [d0, d2, d1, d3] memory, a [B, S, H, D] layout. */
void tensor_alloc(tensor_t* x, DLDataType type, int ndim, const int64_t* shape, int token_major);
void tensor_free(tensor_t* x);
size_t tensor_offset(const tensor_t* x, const int64_t* index); /* broadcasting: index past a length-1 dim reads 0 */
double tensor_get(const tensor_t* x, const int64_t* index);
void tensor_set(tensor_t* x, const int64_t* index, double value); /* rounds to the element type */
void tensor_fill_normal(tensor_t* x, unsigned* seed, double stddev);
void tensor_fill(tensor_t* x, double value);
unsigned next_random(unsigned* seed);
double rand_normal(unsigned* seed);

/* The problem a case describes, in the library's terms. */
typedef struct {
  int batch, heads, kv_heads, lq, lk, d, dv;
  ae_options options;
  const tensor_t* bias;      /* float32, 1..4-d broadcastable, or NULL */
  const tensor_t* keep_mask; /* bool, 1..4-d broadcastable, or NULL */
} problem_t;

/* Naive float64 attention: out [B, H, Lq, Dv], lse [B, H, Lq] (-inf for an empty row), p [B, H, Lq, Lk]. */
void reference_forward(const problem_t* p, const tensor_t* q, const tensor_t* k, const tensor_t* v, double* out, double* lse, double* probs);
/* Its gradients given d_out, from the probabilities: dq, dk, dv in logical [B, H|Hkv, L, D] order, dbias shaped as bias. */
void reference_backward(const problem_t* p, const tensor_t* q, const tensor_t* k, const tensor_t* v, const tensor_t* d_out,
                        const double* out, const double* probs, double* dq, double* dk, double* dv, double* dbias);
int reference_visible(const problem_t* p, int b, int h, int i, int j);

/* Largest |a - b| over the logical elements of a 4-d tensor against a dense double array. */
double max_error(const tensor_t* x, const double* expected, double* max_expected);

#endif
