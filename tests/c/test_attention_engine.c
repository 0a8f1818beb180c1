/* The C ABI's test: forward over every mask kind and dtype against a naive float64 attention written here, backward
   spot checks, every error status, and concurrent calls from pthreads giving the same bits as serial ones.
   Prints "c abi: N passed, M failed" last; exits nonzero when anything failed. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <pthread.h>

#include "test_helpers.h"

typedef struct {
  const char* name;
  int batch, heads, kv_heads, lq, lk, d, dv;
  uint32_t mask;
  int alignment;
  int64_t window_left, window_right;
  float scale; /* 0: the default 1/sqrt(D) */
  int bias_kind; /* 0 none; 1 full [B, H, Lq, Lk] with -inf entries; 2 padding [B, 1, 1, Lk] with a -inf tail; 3 [Lq, Lk] */
  int keep_kind; /* 0 none; 1 [Lq, Lk] random with one row fully hidden; 2 padding [B, 1, 1, Lk] */
  int token_major; /* q, k, v, output stored [B, S, H, D] */
  int weights;
} case_t;

static const case_t forward_cases[] = {
    {"plain", 2, 3, 3, 17, 33, 16, 16, 0, 0, -1, -1, 0, 0, 0, 0, 1},
    {"causal top-left", 1, 2, 2, 40, 40, 64, 64, AE_MASK_CAUSAL, AE_ALIGN_TOP_LEFT, -1, -1, 0, 0, 0, 0, 0},
    {"causal bottom-right decode GQA", 2, 8, 2, 5, 70, 32, 32, AE_MASK_CAUSAL, AE_ALIGN_BOTTOM_RIGHT, -1, -1, 0, 0, 0, 0, 0},
    {"window 7/3", 1, 2, 1, 50, 50, 16, 24, AE_MASK_WINDOW, AE_ALIGN_TOP_LEFT, 7, 3, 0, 0, 0, 0, 0},
    {"causal and window bottom-right", 1, 4, 4, 20, 90, 32, 32, AE_MASK_CAUSAL | AE_MASK_WINDOW, AE_ALIGN_BOTTOM_RIGHT, 16, -1, 0, 0, 0, 0, 1},
    {"bias with -inf", 2, 2, 2, 13, 29, 24, 40, 0, 0, -1, -1, 0, 1, 0, 0, 1},
    {"padding bias, causal, token-major", 2, 4, 2, 9, 37, 64, 64, AE_MASK_CAUSAL, AE_ALIGN_BOTTOM_RIGHT, -1, -1, 0, 2, 0, 1, 0},
    {"keep-mask with a hidden row, MQA, D=1", 1, 4, 1, 11, 23, 1, 3, 0, 0, -1, -1, 0, 0, 1, 0, 1},
    {"padding keep-mask, bias [Lq, Lk], scale 0.3, token-major", 2, 2, 2, 16, 48, 32, 32, 0, 0, -1, -1, 0.3f, 3, 2, 1, 0},
    {"one query, 300 keys, GQA 16/4", 1, 16, 4, 1, 300, 128, 128, AE_MASK_CAUSAL, AE_ALIGN_BOTTOM_RIGHT, -1, -1, 0, 0, 0, 0, 0},
    {"bottom-right Lq > Lk: empty rows", 1, 2, 2, 40, 25, 16, 16, AE_MASK_CAUSAL, AE_ALIGN_BOTTOM_RIGHT, -1, -1, 0, 0, 0, 0, 0},
    {"several tiles, causal", 1, 2, 2, 300, 300, 64, 64, AE_MASK_CAUSAL, AE_ALIGN_TOP_LEFT, -1, -1, 0, 0, 0, 0, 0},
};
#define FORWARD_CASES ((int)(sizeof forward_cases / sizeof forward_cases[0]))

/* One case's tensors and its float64 answer. */
typedef struct {
  case_t c;
  dtype_t dtype;
  problem_t p;
  tensor_t q, k, v, out, lse, weights, bias, keep;
  double *ref_out, *ref_lse, *ref_probs;
} instance_t;

static void make_instance(instance_t* x, const case_t* c, dtype_t dtype, unsigned seed) {
  memset(x, 0, sizeof *x);
  x->c = *c;
  x->dtype = dtype;
  problem_t* p = &x->p;
  p->batch = c->batch; p->heads = c->heads; p->kv_heads = c->kv_heads;
  p->lq = c->lq; p->lk = c->lk; p->d = c->d; p->dv = c->dv;
  p->options = ae_options_default();
  p->options.mask = c->mask;
  p->options.alignment = c->alignment;
  if (c->mask & AE_MASK_WINDOW) { p->options.window_left = c->window_left; p->options.window_right = c->window_right; }
  if (c->scale != 0) { p->options.has_scale = 1; p->options.scale = c->scale; }

  int64_t qs[4] = {c->batch, c->heads, c->lq, c->d}, ks[4] = {c->batch, c->kv_heads, c->lk, c->d};
  int64_t vs[4] = {c->batch, c->kv_heads, c->lk, c->dv}, os[4] = {c->batch, c->heads, c->lq, c->dv};
  int64_t ls[3] = {c->batch, c->heads, c->lq}, ws[4] = {c->batch, c->heads, c->lq, c->lk};
  tensor_alloc(&x->q, dl_type(dtype), 4, qs, c->token_major);
  tensor_alloc(&x->k, dl_type(dtype), 4, ks, c->token_major);
  tensor_alloc(&x->v, dl_type(dtype), 4, vs, c->token_major);
  tensor_alloc(&x->out, dl_type(dtype), 4, os, c->token_major);
  tensor_alloc(&x->lse, dl_float32(), 3, ls, 0);
  tensor_fill_normal(&x->q, &seed, 1.0);
  tensor_fill_normal(&x->k, &seed, 1.0);
  tensor_fill_normal(&x->v, &seed, 1.0);
  tensor_fill(&x->out, 12345.0); /* every element must be overwritten */
  p->options.lse = &x->lse.t;
  if (c->weights) {
    tensor_alloc(&x->weights, dl_float32(), 4, ws, 0);
    p->options.weights = &x->weights.t;
  }

  if (c->bias_kind) {
    int64_t full[4] = {c->batch, c->heads, c->lq, c->lk}, pad[4] = {c->batch, 1, 1, c->lk}, square[2] = {c->lq, c->lk};
    if (c->bias_kind == 1) tensor_alloc(&x->bias, dl_float32(), 4, full, 0);
    else if (c->bias_kind == 2) tensor_alloc(&x->bias, dl_float32(), 4, pad, 0);
    else tensor_alloc(&x->bias, dl_float32(), 2, square, 0);
    tensor_fill_normal(&x->bias, &seed, 1.0);
    float* b = x->bias.storage;
    if (c->bias_kind == 1)
      for (size_t e = 0; e < x->bias.storage_elements; e++) if (next_random(&seed) % 5 == 0) b[e] = -INFINITY;
    if (c->bias_kind == 2)
      for (int bb = 0; bb < c->batch; bb++)
        for (int j = c->lk - 3 - 2 * bb; j < c->lk; j++) b[(size_t)bb * c->lk + j] = -INFINITY;
    p->bias = &x->bias;
    p->options.bias = &x->bias.t;
  }
  if (c->keep_kind) {
    int64_t square[2] = {c->lq, c->lk}, pad[4] = {c->batch, 1, 1, c->lk};
    if (c->keep_kind == 1) tensor_alloc(&x->keep, dl_bool(), 2, square, 0);
    else tensor_alloc(&x->keep, dl_bool(), 4, pad, 0);
    uint8_t* m = x->keep.storage;
    for (size_t e = 0; e < x->keep.storage_elements; e++) m[e] = next_random(&seed) % 3 != 0;
    if (c->keep_kind == 1) memset(m + (size_t)(c->lq / 2) * c->lk, 0, (size_t)c->lk); /* one row sees nothing */
    if (c->keep_kind == 2)
      for (int bb = 0; bb < c->batch; bb++) {
        for (int j = 0; j < c->lk; j++) m[(size_t)bb * c->lk + j] = j < c->lk - 5 - bb;
      }
    p->keep_mask = &x->keep;
    p->options.keep_mask = &x->keep.t;
  }

  /* Poison every key no query of its group can see: NaN and infinities there must change no bit of the result. */
  int group = c->heads / c->kv_heads;
  for (int b = 0; b < c->batch; b++)
    for (int g = 0; g < c->kv_heads; g++)
      for (int j = 0; j < c->lk; j++) {
        int seen = 0;
        for (int h = g * group; h < (g + 1) * group && !seen; h++)
          for (int i = 0; i < c->lq && !seen; i++) seen = reference_visible(p, b, h, i, j);
        if (seen) continue;
        double poison = (j % 3 == 0) ? NAN : (j % 3 == 1) ? INFINITY : -1e30;
        for (int d = 0; d < c->d; d++) { int64_t i4[4] = {b, g, j, d}; tensor_set(&x->k, i4, poison); }
        for (int e = 0; e < c->dv; e++) { int64_t i4[4] = {b, g, j, e}; tensor_set(&x->v, i4, poison); }
      }

  size_t rows = (size_t)c->batch * c->heads * c->lq;
  x->ref_out = malloc(sizeof(double) * rows * c->dv);
  x->ref_lse = malloc(sizeof(double) * rows);
  x->ref_probs = malloc(sizeof(double) * rows * c->lk);
  reference_forward(p, &x->q, &x->k, &x->v, x->ref_out, x->ref_lse, x->ref_probs);
}

static void free_instance(instance_t* x) {
  tensor_free(&x->q); tensor_free(&x->k); tensor_free(&x->v); tensor_free(&x->out); tensor_free(&x->lse);
  tensor_free(&x->weights); tensor_free(&x->bias); tensor_free(&x->keep);
  free(x->ref_out); free(x->ref_lse); free(x->ref_probs);
}

/* Output error bound: fp32 accumulation everywhere; the storage type's rounding of the output dominates for 16 bits. */
static double output_tolerance(dtype_t dtype, double largest) {
  double unit = dtype == DT_F32 ? 1e-5 : dtype == DT_F16 ? 4.0 / 2048 : 4.0 / 256;
  return unit * (largest > 1 ? largest : 1) + 1e-6;
}

static void check_forward(instance_t* x) {
  const char* name = x->c.name;
  const char* dt = dtype_names[x->dtype];
  ae_status status = ae_forward(&x->q.t, &x->k.t, &x->v.t, &x->out.t, &x->p.options);
  CHECK(status == AE_OK, "[%s %s] ae_forward returned %s: %s", name, dt, ae_status_name(status), ae_last_error());
  if (status != AE_OK) return;

  size_t rows = (size_t)x->c.batch * x->c.heads * x->c.lq;
  double largest, error = max_error(&x->out, x->ref_out, &largest);
  double tolerance = output_tolerance(x->dtype, largest);
  CHECK(error <= tolerance, "[%s %s] output off by %g (tolerance %g)", name, dt, error, tolerance);

  const float* lse = x->lse.storage;
  int empty_rows = 0, lse_ok = 1, zeros_ok = 1;
  for (size_t r = 0; r < rows; r++) {
    if (x->ref_lse[r] == -INFINITY) {
      empty_rows++;
      lse_ok &= lse[r] == -INFINITY;
      for (int e = 0; e < x->c.dv; e++) {
        int64_t i4[4] = {(int64_t)(r / ((size_t)x->c.heads * x->c.lq)), (int64_t)(r / x->c.lq % x->c.heads), (int64_t)(r % x->c.lq), e};
        zeros_ok &= tensor_get(&x->out, i4) == 0.0;
      }
    } else {
      lse_ok &= fabs(lse[r] - x->ref_lse[r]) <= 2e-5 * (1 + fabs(x->ref_lse[r]));
    }
  }
  CHECK(lse_ok, "[%s %s] LSE differs from the reference (or an empty row's is not -inf)", name, dt);
  CHECK(zeros_ok, "[%s %s] a row with no visible key is not all zeros", name, dt);
  if (x->c.keep_kind == 1 || strstr(name, "empty rows")) CHECK(empty_rows > 0, "[%s %s] the case should have empty rows", name, dt);

  if (x->c.weights) {
    double worst = 0;
    for (size_t e = 0; e < rows * x->c.lk; e++) {
      double diff = fabs(((const float*)x->weights.storage)[e] - x->ref_probs[e]);
      if (!(diff <= worst)) worst = isnan(diff) ? INFINITY : diff;
    }
    CHECK(worst <= 2e-5, "[%s %s] weights off by %g", name, dt, worst);
  }
}

/* Same call with one thread and with all: the bits must agree. */
static void check_thread_count_determinism(void) {
  instance_t a;
  make_instance(&a, &forward_cases[FORWARD_CASES - 1], DT_F32, 77);
  ae_status s1 = ae_forward(&a.q.t, &a.k.t, &a.v.t, &a.out.t, &a.p.options);
  size_t bytes = a.out.storage_elements * (size_t)a.out.element_size;
  void* all = malloc(bytes);
  memcpy(all, a.out.storage, bytes);
  a.p.options.max_threads = 1;
  ae_status s2 = ae_forward(&a.q.t, &a.k.t, &a.v.t, &a.out.t, &a.p.options);
  CHECK(s1 == AE_OK && s2 == AE_OK && memcmp(all, a.out.storage, bytes) == 0, "max_threads = 1 and all cores give different bits");
  free(all);
  free_instance(&a);
}

/* ---- backward ---- */

static void check_backward(const case_t* c, dtype_t dtype, int with_dbias) {
  instance_t x;
  make_instance(&x, c, dtype, 1234);
  x.p.options.weights = NULL;
  ae_status status = ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &x.p.options);
  CHECK(status == AE_OK, "[backward %s] forward failed: %s", c->name, ae_last_error());
  tensor_t d_out, dq, dk, dv, dbias;
  int64_t qs[4] = {c->batch, c->heads, c->lq, c->d}, ks[4] = {c->batch, c->kv_heads, c->lk, c->d};
  int64_t vs[4] = {c->batch, c->kv_heads, c->lk, c->dv}, os[4] = {c->batch, c->heads, c->lq, c->dv};
  unsigned seed = 99;
  tensor_alloc(&d_out, dl_type(dtype), 4, os, c->token_major);
  tensor_fill_normal(&d_out, &seed, 1.0);
  tensor_alloc(&dq, dl_type(dtype), 4, qs, c->token_major);
  tensor_alloc(&dk, dl_type(dtype), 4, ks, 0);
  tensor_alloc(&dv, dl_type(dtype), 4, vs, c->token_major);
  if (with_dbias) tensor_alloc(&dbias, dl_float32(), x.bias.t.ndim, x.bias.shape, 0);

  ae_options options = x.p.options;
  options.lse = NULL; /* a forward output: the saved LSE is ae_backward's own argument */
  status = ae_backward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &x.lse.t, &d_out.t, &dq.t, &dk.t, &dv.t, &options, with_dbias ? &dbias.t : NULL);
  CHECK(status == AE_OK, "[backward %s %s] returned %s: %s", c->name, dtype_names[dtype], ae_status_name(status), ae_last_error());

  size_t nq = (size_t)c->batch * c->heads * c->lq * c->d, nk = (size_t)c->batch * c->kv_heads * c->lk * c->d;
  size_t nv = (size_t)c->batch * c->kv_heads * c->lk * c->dv;
  double *rq = malloc(sizeof(double) * nq), *rk = malloc(sizeof(double) * nk), *rv = malloc(sizeof(double) * nv);
  double* rb = with_dbias ? malloc(sizeof(double) * x.bias.storage_elements) : NULL;
  reference_backward(&x.p, &x.q, &x.k, &x.v, &d_out, x.ref_out, x.ref_probs, rq, rk, rv, rb);
  double unit = dtype == DT_F32 ? 1e-4 : 3e-2;
  const char* names[3] = {"d_q", "d_k", "d_v"};
  const tensor_t* got[3] = {&dq, &dk, &dv};
  const double* want[3] = {rq, rk, rv};
  for (int t = 0; t < 3 && status == AE_OK; t++) {
    double largest, error = max_error(got[t], want[t], &largest);
    CHECK(error <= unit * (largest > 1 ? largest : 1), "[backward %s %s] %s off by %g (largest %g)", c->name, dtype_names[dtype], names[t], error, largest);
  }
  if (with_dbias && status == AE_OK) {
    double worst = 0, largest = 0;
    for (size_t e = 0; e < x.bias.storage_elements; e++) {
      double g = ((const float*)dbias.storage)[e], diff = fabs(g - rb[e]);
      if (isnan(diff)) diff = INFINITY;
      if (diff > worst) worst = diff;
      if (fabs(rb[e]) > largest) largest = fabs(rb[e]);
    }
    CHECK(worst <= unit * (largest > 1 ? largest : 1), "[backward %s] d_bias off by %g", c->name, worst);
  }
  free(rq); free(rk); free(rv); free(rb);
  tensor_free(&d_out); tensor_free(&dq); tensor_free(&dk); tensor_free(&dv);
  if (with_dbias) tensor_free(&dbias);
  free_instance(&x);
}

/* ---- errors ---- */

static int unchanged(const tensor_t* x, double value) {
  int64_t i4[4] = {0, 0, 0, 0};
  return tensor_get(x, i4) == value;
}

static void expect_status(ae_status got, ae_status want, const char* needle, const char* what) {
  const char* message = ae_last_error();
  CHECK(got == want, "%s: expected %s, got %s (%s)", what, ae_status_name(want), ae_status_name(got), got == AE_OK ? "" : message);
  if (got == want && needle) CHECK(strstr(message, needle) != NULL, "%s: the message should name '%s': %s", what, needle, message);
}

static void check_errors(void) {
  instance_t x;
  make_instance(&x, &forward_cases[0], DT_F32, 5);
  x.p.options.weights = NULL;
  ae_options o = x.p.options;
  tensor_fill(&x.out, 7.0);

  expect_status(ae_forward(NULL, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_NULL_POINTER, "q", "NULL q");
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, NULL, &o), AE_ERROR_NULL_POINTER, "output", "NULL output");
  CHECK(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, NULL) == AE_OK, "NULL options (the defaults) failed: %s", ae_last_error());
  tensor_fill(&x.out, 7.0);

  DLTensor bad = x.q.t;
  bad.ndim = 3;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "q", "q with ndim 3");
  bad = x.q.t; bad.ndim = 9;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "q has ndim 9", "q with ndim 9");
  bad = x.q.t; bad.ndim = -1;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "q has ndim -1", "q with ndim -1");
  bad = x.q.t; bad.shape = NULL;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_NULL_POINTER, "q.shape", "NULL shape");
  bad = x.q.t; bad.data = NULL;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_NULL_POINTER, "q.data", "NULL data");
  bad = x.k.t; bad.dtype.code = kDLInt;
  expect_status(ae_forward(&x.q.t, &bad, &x.v.t, &x.out.t, &o), AE_ERROR_UNSUPPORTED_DTYPE, "k has dtype int32", "int32 k");
  bad = x.v.t; bad.dtype.bits = 16;
  expect_status(ae_forward(&x.q.t, &x.k.t, &bad, &x.out.t, &o), AE_ERROR_UNSUPPORTED_DTYPE, "v has dtype float16 but q has float32", "mixed dtypes");
  bad = x.q.t; bad.dtype.lanes = 4;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_UNSUPPORTED_DTYPE, "q has dtype", "vector lanes");
  bad = x.q.t; bad.device.device_type = kDLOpenCL;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_UNSUPPORTED_DEVICE, "kDLOpenCL", "OpenCL q");
  bad = x.v.t; bad.device.device_type = kDLCUDA;
  expect_status(ae_forward(&x.q.t, &x.k.t, &bad, &x.out.t, &o), AE_ERROR_UNSUPPORTED_DEVICE, "v is on kDLCuda", "mixed host and device");
  if (ae_backend_available(AE_BACKEND_CUDA) != AE_OK) {
    DLTensor dq = x.q.t, dk = x.k.t, dv = x.v.t, dout = x.out.t;
    dq.device.device_type = dk.device.device_type = dv.device.device_type = dout.device.device_type = kDLCUDA;
    expect_status(ae_forward(&dq, &dk, &dv, &dout, &o), AE_ERROR_BACKEND_UNAVAILABLE, "CUDA backend is not available", "kDLCUDA without a GPU");
    expect_status(ae_backend_available(AE_BACKEND_CUDA), AE_ERROR_BACKEND_UNAVAILABLE, "Cuda", "ae_backend_available(CUDA)");
  }
  CHECK(ae_backend_available(AE_BACKEND_CPU) == AE_OK, "the Cpu backend should be available");
  CHECK(ae_backend_available(AE_BACKEND_REFERENCE) == AE_OK, "the Reference backend should be available");
  expect_status(ae_backend_available((ae_backend)42), AE_ERROR_INVALID_ARGUMENT, "backend is 42", "unknown backend");

  /* shapes */
  tensor_t wide_k;
  int64_t wide_shape[4] = {x.k.shape[0], x.k.shape[1], x.k.shape[2], x.k.shape[3] + 1};
  tensor_alloc(&wide_k, x.k.t.dtype, 4, wide_shape, 0);
  expect_status(ae_forward(&x.q.t, &wide_k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "k", "k's D differs from q's");
  tensor_free(&wide_k);
  int64_t overlapping_k[4] = {x.k.strides[0], x.k.strides[1], 1, 1};
  bad = x.k.t; bad.strides = overlapping_k;
  expect_status(ae_forward(&x.q.t, &bad, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "k has shape", "k with overlapping strides");
  int64_t negative[4] = {x.q.shape[0], -2, x.q.shape[2], x.q.shape[3]};
  bad = x.q.t; bad.shape = negative;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "q.shape[1] is -2", "negative length");
  int64_t backwards[4] = {x.q.strides[0], x.q.strides[1], -x.q.strides[2], x.q.strides[3]};
  bad = x.q.t; bad.strides = backwards;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "q.strides[2]", "negative stride");
  /* sizes past what a pointer can address are refused before anything is read */
  int64_t huge[4] = {1, 1, (int64_t)1 << 62, 16};
  bad = x.q.t; bad.shape = huge; bad.strides = NULL;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "more elements than a pointer can", "a 2^66-element q");
  int64_t huge_strides[4] = {(int64_t)1 << 61, (int64_t)1 << 61, 16, 1}, two_heads[4] = {1, 4, x.q.shape[2], x.q.shape[3]};
  bad = x.q.t; bad.shape = two_heads; bad.strides = huge_strides;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "q", "strides past the address space");
  bad = x.q.t; bad.byte_offset = 2;
  expect_status(ae_forward(&bad, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_INVALID_ARGUMENT, "aligned", "misaligned byte_offset");
  int64_t overlapping[4] = {0, 0, 0, 1};
  bad = x.out.t; bad.strides = overlapping;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &bad, &o), AE_ERROR_INVALID_ARGUMENT, "output", "self-overlapping output");
  DLTensor alias = x.q.t; /* output aliasing q (same shape when D == Dv) */
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &alias, &o), AE_ERROR_INVALID_ARGUMENT, "output", "output aliases q");
  CHECK(unchanged(&x.out, 7.0), "a rejected call wrote its output");

  /* options */
  ae_options bad_options = o;
  bad_options.struct_size = 40;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_ABI_MISMATCH, "struct_size is 40", "short options");
  struct { ae_options o; uint64_t newer_field; } newer = {o, 1};
  newer.o.struct_size = sizeof newer;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &newer.o), AE_ERROR_ABI_MISMATCH, "does not know", "a newer header's field set");
  newer.newer_field = 0;
  CHECK(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &newer.o) == AE_OK, "a newer header's struct with its new field zero should work: %s", ae_last_error());
  tensor_fill(&x.out, 7.0);
  /* The first header's 80-byte ae_options (no dropout fields) still works: the missing fields read as zero. */
  const int64_t origin[4] = {0, 0, 0, 0};
  struct { ae_options o; } first = {o};
  first.o.struct_size = 80;
  first.o.dropout = 0.7; /* beyond the caller's declared size: must not be read */
  CHECK(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &first.o) == AE_OK, "an 80-byte ae_options should work: %s", ae_last_error());
  double first_bits = tensor_get(&x.out, origin);
  CHECK(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &o) == AE_OK, "forward: %s", ae_last_error());
  CHECK(tensor_get(&x.out, origin) == first_bits, "an 80-byte ae_options read a dropout field past its size");
  /* Dropout: every field takes effect or is refused by name. */
  bad_options = o; bad_options.dropout = 1.0;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->dropout is 1", "dropout of 1");
  bad_options = o; bad_options.dropout_seed = 5;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "ignored", "a dropout seed without dropout");
  bad_options = o; bad_options.reserved2 = 1;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "reserved2", "reserved2 set");
  ae_options dropped = o; dropped.dropout = 0.5; dropped.dropout_seed = 11; dropped.dropout_offset = 3;
  CHECK(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &dropped) == AE_OK, "forward with dropout: %s", ae_last_error());
  double dropped_first = tensor_get(&x.out, origin);
  CHECK(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &dropped) == AE_OK, "forward with dropout: %s", ae_last_error());
  CHECK(tensor_get(&x.out, origin) == dropped_first, "the same seed and offset drew another mask");
  tensor_fill(&x.out, 7.0);
  bad_options = o; bad_options.mask = 8;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->mask", "unknown mask bit");
  bad_options = o; bad_options.alignment = 5; bad_options.mask = AE_MASK_CAUSAL;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->alignment is 5", "bad alignment");
  bad_options = o; bad_options.alignment = AE_ALIGN_BOTTOM_RIGHT;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "ignored", "alignment without a mask");
  bad_options = o; bad_options.window_left = 4;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "AE_MASK_WINDOW", "window without the flag");
  bad_options = o; bad_options.mask = AE_MASK_WINDOW; bad_options.window_left = -3;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->window_left is -3", "negative window");
  bad_options = o; bad_options.mask = AE_MASK_WINDOW; bad_options.window_right = (int64_t)1 << 40;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->window_right", "window too wide");
  bad_options = o; bad_options.scale = 0.5f;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "has_scale", "scale without has_scale");
  bad_options = o; bad_options.has_scale = 1; bad_options.scale = NAN;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "cale", "NaN scale");
  bad_options = o; bad_options.max_threads = -2;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->max_threads is -2", "negative threads");
  bad_options = o; bad_options.backend = 17;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->backend is 17", "unknown backend");
  bad_options = o; bad_options.reserved = 1;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->reserved", "reserved field");
  if (ae_backend_available(AE_BACKEND_CUDA) != AE_OK) {
    bad_options = o; bad_options.backend = AE_BACKEND_CUDA;
    expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_BACKEND_UNAVAILABLE, "Cuda", "CUDA backend asked for without a GPU");
  }

  /* option tensors */
  tensor_t bias, keep, lse_wrong;
  int64_t bias_shape[2] = {x.p.lq, x.p.lk}, wrong_bias_shape[2] = {x.p.lq + 1, x.p.lk}, lse_shape[3] = {x.p.batch, x.p.heads, x.p.lq + 2};
  tensor_alloc(&bias, dl_float32(), 2, bias_shape, 0);
  bad_options = o; bad = bias.t; bad.dtype.bits = 64;
  bad_options.bias = &bad;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_UNSUPPORTED_DTYPE, "options->bias has dtype float64", "float64 bias");
  bad = bias.t; bad.shape = wrong_bias_shape; bad_options.bias = &bad;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "Bias", "bias of the wrong shape");
  bad = bias.t; bad.ndim = 0; bad_options.bias = &bad;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "options->bias has ndim 0", "0-d bias");
  tensor_alloc(&keep, dl_float32(), 2, bias_shape, 0);
  bad_options = o; bad_options.keep_mask = &keep.t;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_UNSUPPORTED_DTYPE, "options->keep_mask has dtype float32", "float keep-mask");
  tensor_alloc(&lse_wrong, dl_float32(), 3, lse_shape, 0);
  bad_options = o; bad_options.lse = &lse_wrong.t;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_INVALID_ARGUMENT, "Lse", "LSE of the wrong shape");
  bad_options = o; bad = x.lse.t; bad.dtype.bits = 16; bad_options.lse = &bad;
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &bad_options), AE_ERROR_UNSUPPORTED_DTYPE, "options->lse has dtype float16", "float16 LSE");
  CHECK(unchanged(&x.out, 7.0), "a rejected call wrote its output");

  /* A valid call a backend cannot honour: the environment forces a CPU vector path this library cannot run. */
  setenv("ATTENTION_CPU_ISA", "no-such-path", 1);
  expect_status(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &o), AE_ERROR_NOT_SUPPORTED, "ATTENTION_CPU_ISA", "an unknown forced CPU path");
  unsetenv("ATTENTION_CPU_ISA");
  CHECK(ae_forward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &o) == AE_OK, "the call works again without the variable: %s", ae_last_error());
  tensor_fill(&x.out, 7.0);

  /* ABI checks */
  CHECK(AE_CHECK_ABI() == AE_OK, "AE_CHECK_ABI failed: %s", ae_last_error());
  expect_status(ae_check_abi(AE_ABI_VERSION + 1, sizeof(ae_options), sizeof(DLTensor)), AE_ERROR_ABI_MISMATCH, "ABI version", "a future ABI version");
  expect_status(ae_check_abi(AE_ABI_VERSION, 72, sizeof(DLTensor)), AE_ERROR_ABI_MISMATCH, "ae_options", "an ae_options smaller than the first header's");
  CHECK(ae_check_abi(AE_ABI_VERSION, 80, sizeof(DLTensor)) == AE_OK, "the first header's 80-byte ae_options should pass the check");
  CHECK(ae_check_abi(AE_ABI_VERSION, sizeof(ae_options) + 8, sizeof(DLTensor)) == AE_OK, "a newer header's larger ae_options should pass the check");
  expect_status(ae_check_abi(AE_ABI_VERSION, sizeof(ae_options), sizeof(DLTensor) + 8), AE_ERROR_ABI_MISMATCH, "DLTensor", "a different DLTensor");
  CHECK(ae_abi_version() == AE_ABI_VERSION, "ae_abi_version is %u, header says %d", ae_abi_version(), AE_ABI_VERSION);
  CHECK(strcmp(ae_status_name(AE_ERROR_NOT_SUPPORTED), "AE_ERROR_NOT_SUPPORTED") == 0, "ae_status_name");
  CHECK(strcmp(ae_status_name((ae_status)99), "AE_UNKNOWN_STATUS") == 0, "ae_status_name of an unknown status");

  /* backward errors */
  DLTensor lse_t = x.lse.t;
  expect_status(ae_backward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, NULL, &x.out.t, &x.q.t, &x.k.t, &x.v.t, &o, NULL), AE_ERROR_NULL_POINTER, "lse", "backward without lse");
  ae_options with_lse = o;
  with_lse.lse = &x.lse.t;
  expect_status(ae_backward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &lse_t, &x.out.t, &x.q.t, &x.k.t, &x.v.t, &with_lse, NULL), AE_ERROR_INVALID_ARGUMENT, "options->lse", "backward with options->lse");
  DLTensor half_grad = x.q.t;
  half_grad.dtype.bits = 16;
  expect_status(ae_backward(&x.q.t, &x.k.t, &x.v.t, &x.out.t, &lse_t, &x.out.t, &half_grad, &x.k.t, &x.v.t, NULL, NULL), AE_ERROR_UNSUPPORTED_DTYPE, "d_q", "float16 d_q for float32 q");

  tensor_free(&bias); tensor_free(&keep); tensor_free(&lse_wrong);
  free_instance(&x);
}

/* ---- threads ---- */

#define THREADS 4
#define THREAD_ROUNDS 6
static instance_t shared_cases[THREADS];
static void* serial_bits[THREADS];

typedef struct { int id; int mismatches; int failures; char message[256]; } worker_t;

static void* worker(void* arg) {
  worker_t* w = arg;
  for (int round = 0; round < THREAD_ROUNDS; round++) {
    instance_t* x = &shared_cases[(w->id + round) % THREADS];
    tensor_t out;
    tensor_alloc(&out, x->out.t.dtype, 4, x->out.shape, x->c.token_major);
    ae_options options = x->p.options;
    options.lse = NULL;
    options.weights = NULL;
    if (ae_forward(&x->q.t, &x->k.t, &x->v.t, &out.t, &options) != AE_OK) {
      w->failures++;
      snprintf(w->message, sizeof w->message, "%s", ae_last_error());
    } else if (memcmp(out.storage, serial_bits[(w->id + round) % THREADS], out.storage_elements * (size_t)out.element_size) != 0) {
      w->mismatches++;
    }
    /* this thread's own error stays its own */
    DLTensor bad = x->q.t;
    bad.ndim = 2;
    char expected[64];
    ae_forward(&bad, &x->k.t, &x->v.t, &out.t, NULL);
    snprintf(expected, sizeof expected, "%s", ae_last_error());
    if (strstr(expected, "q has rank 2") == NULL && strstr(expected, "q") == NULL) w->failures++;
    tensor_free(&out);
  }
  return NULL;
}

static void check_threads(void) {
  const int picks[THREADS] = {1, 5, 9, 11};
  const dtype_t types[THREADS] = {DT_F32, DT_F16, DT_BF16, DT_F32};
  for (int t = 0; t < THREADS; t++) {
    make_instance(&shared_cases[t], &forward_cases[picks[t]], types[t], 300 + t);
    shared_cases[t].p.options.lse = NULL;
    shared_cases[t].p.options.weights = NULL;
    ae_forward(&shared_cases[t].q.t, &shared_cases[t].k.t, &shared_cases[t].v.t, &shared_cases[t].out.t, &shared_cases[t].p.options);
    size_t bytes = shared_cases[t].out.storage_elements * (size_t)shared_cases[t].out.element_size;
    serial_bits[t] = malloc(bytes);
    memcpy(serial_bits[t], shared_cases[t].out.storage, bytes);
  }
  pthread_t threads[THREADS];
  worker_t workers[THREADS];
  for (int t = 0; t < THREADS; t++) {
    memset(&workers[t], 0, sizeof workers[t]);
    workers[t].id = t;
    pthread_create(&threads[t], NULL, worker, &workers[t]);
  }
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    CHECK(workers[t].failures == 0, "thread %d: %d failed calls (%s)", t, workers[t].failures, workers[t].message);
    CHECK(workers[t].mismatches == 0, "thread %d: %d concurrent results differ from the serial bits", t, workers[t].mismatches);
  }
  for (int t = 0; t < THREADS; t++) { free(serial_bits[t]); free_instance(&shared_cases[t]); }
}

int main(void) {
  printf("attention engine %s, ABI %u\n", ae_version(), ae_abi_version());
  if (AE_CHECK_ABI() != AE_OK) {
    printf("ABI mismatch: %s\n", ae_last_error());
    return 1;
  }
  for (int dtype = 0; dtype < 3; dtype++)
    for (int c = 0; c < FORWARD_CASES; c++) {
      instance_t x;
      make_instance(&x, &forward_cases[c], (dtype_t)dtype, 1000u * (unsigned)c + (unsigned)dtype);
      check_forward(&x);
      free_instance(&x);
    }
  check_thread_count_determinism();

  const case_t backward_cases[] = {
      {"plain", 1, 2, 2, 9, 13, 8, 8, 0, 0, -1, -1, 0, 0, 0, 0, 0},
      {"causal bottom-right GQA", 1, 4, 2, 6, 20, 16, 8, AE_MASK_CAUSAL, AE_ALIGN_BOTTOM_RIGHT, -1, -1, 0, 0, 0, 0, 0},
      {"full bias with -inf, token-major", 2, 2, 2, 7, 11, 16, 16, 0, 0, -1, -1, 0, 1, 0, 1, 0},
      {"bias [Lq, Lk] and padding keep-mask", 2, 2, 1, 8, 19, 8, 12, 0, 0, -1, -1, 0.5f, 3, 2, 0, 0},
  };
  for (int c = 0; c < 4; c++) check_backward(&backward_cases[c], DT_F32, backward_cases[c].bias_kind != 0);
  check_backward(&backward_cases[1], DT_BF16, 0);
  check_backward(&backward_cases[2], DT_F16, 1);

  check_errors();
  check_threads();

  printf("c abi: %d passed, %d failed\n", checks_passed, checks_failed);
  return checks_failed == 0 ? 0 : 1;
}
