#include "test_helpers.h"

int checks_passed = 0, checks_failed = 0;
const char* dtype_names[3] = {"float32", "float16", "bfloat16"};

DLDataType dl_type(dtype_t dtype) {
  DLDataType t = {kDLFloat, 32, 1};
  if (dtype == DT_F16) t.bits = 16;
  if (dtype == DT_BF16) { t.code = kDLBfloat; t.bits = 16; }
  return t;
}
DLDataType dl_float32(void) { DLDataType t = {kDLFloat, 32, 1}; return t; }
DLDataType dl_bool(void) { DLDataType t = {kDLBool, 8, 1}; return t; }

void tensor_alloc(tensor_t* x, DLDataType type, int ndim, const int64_t* shape, int token_major) {
  memset(x, 0, sizeof *x);
  x->element_size = type.bits / 8;
  size_t count = 1;
  for (int d = 0; d < ndim; d++) { x->shape[d] = shape[d]; count *= (size_t)shape[d]; }
  /* memory order: identity, or [0, 2, 1, 3] for token-major */
  int order[4] = {0, 1, 2, 3};
  if (token_major && ndim == 4) { order[1] = 2; order[2] = 1; }
  int64_t stride = 1;
  for (int m = ndim - 1; m >= 0; m--) { x->strides[order[m]] = stride; stride *= shape[order[m]]; }
  x->storage_elements = count;
  x->storage = calloc(count ? count : 1, (size_t)x->element_size);
  x->t.data = x->storage;
  x->t.device.device_type = kDLCPU;
  x->t.device.device_id = 0;
  x->t.ndim = ndim;
  x->t.dtype = type;
  x->t.shape = x->shape;
  x->t.strides = x->strides;
  x->t.byte_offset = 0;
}

void tensor_free(tensor_t* x) { free(x->storage); x->storage = NULL; }

size_t tensor_offset(const tensor_t* x, const int64_t* index) {
  size_t offset = 0;
  for (int d = 0; d < x->t.ndim; d++) offset += (size_t)((x->shape[d] == 1 ? 0 : index[d]) * x->strides[d]);
  return offset;
}

static float bf16_to_float(uint16_t bits) {
  uint32_t u = (uint32_t)bits << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint16_t float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u);                    /* round to nearest even */
  return (uint16_t)(u >> 16);
}

double tensor_get(const tensor_t* x, const int64_t* index) {
  size_t o = tensor_offset(x, index);
  if (x->t.dtype.code == kDLBool) return ((const uint8_t*)x->storage)[o];
  if (x->t.dtype.bits == 32) return ((const float*)x->storage)[o];
  if (x->t.dtype.code == kDLBfloat) return bf16_to_float(((const uint16_t*)x->storage)[o]);
  return (double)((const _Float16*)x->storage)[o];
}

void tensor_set(tensor_t* x, const int64_t* index, double value) {
  size_t o = tensor_offset(x, index);
  if (x->t.dtype.code == kDLBool) ((uint8_t*)x->storage)[o] = value != 0;
  else if (x->t.dtype.bits == 32) ((float*)x->storage)[o] = (float)value;
  else if (x->t.dtype.code == kDLBfloat) ((uint16_t*)x->storage)[o] = float_to_bf16((float)value);
  else ((_Float16*)x->storage)[o] = (_Float16)(float)value;
}

unsigned next_random(unsigned* seed) {
  /* xorshift32: the same draws on every platform and C library */
  unsigned x = *seed ? *seed : 0x9e3779b9u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *seed = x;
}

double rand_normal(unsigned* seed) {
  double u1 = (next_random(seed) + 1.0) / 4294967297.0, u2 = (next_random(seed) + 1.0) / 4294967297.0;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int next_index(const tensor_t* x, int64_t* index) {
  for (int d = x->t.ndim - 1; d >= 0; d--) {
    if (++index[d] < x->shape[d]) return 1;
    index[d] = 0;
  }
  return 0;
}

void tensor_fill_normal(tensor_t* x, unsigned* seed, double stddev) {
  int64_t index[4] = {0, 0, 0, 0};
  if (x->storage_elements == 0) return;
  do tensor_set(x, index, stddev * rand_normal(seed)); while (next_index(x, index));
}

void tensor_fill(tensor_t* x, double value) {
  int64_t index[4] = {0, 0, 0, 0};
  if (x->storage_elements == 0) return;
  do tensor_set(x, index, value); while (next_index(x, index));
}

/* A 1..4-d mask right-aligned against [B, H, Lq, Lk], length-1 dimensions broadcast. */
static double mask_get(const tensor_t* m, int b, int h, int i, int j) {
  int64_t full[4] = {b, h, i, j}, index[4] = {0, 0, 0, 0};
  int r = m->t.ndim;
  for (int d = 0; d < r; d++) index[d] = full[4 - r + d];
  return tensor_get(m, index);
}

int reference_visible(const problem_t* p, int b, int h, int i, int j) {
  const ae_options* o = &p->options;
  int64_t offset = o->alignment == AE_ALIGN_BOTTOM_RIGHT ? (int64_t)p->lk - p->lq : 0;
  int64_t rel = (int64_t)j - i - offset;
  if ((o->mask & AE_MASK_CAUSAL) && rel > 0) return 0;
  if (o->mask & AE_MASK_WINDOW) {
    if (o->window_left >= 0 && rel < -o->window_left) return 0;
    if (o->window_right >= 0 && rel > o->window_right) return 0;
  }
  if (p->keep_mask && mask_get(p->keep_mask, b, h, i, j) == 0) return 0;
  if (p->bias && mask_get(p->bias, b, h, i, j) == -INFINITY) return 0;
  return 1;
}

static double scale_of(const problem_t* p) { return p->options.has_scale ? p->options.scale : 1.0 / sqrt((double)p->d); }

void reference_forward(const problem_t* p, const tensor_t* q, const tensor_t* k, const tensor_t* v, double* out, double* lse, double* probs) {
  int group = p->heads / p->kv_heads;
  double scale = scale_of(p);
  double* s = malloc(sizeof(double) * (size_t)(p->lk ? p->lk : 1));
  for (int b = 0; b < p->batch; b++)
    for (int h = 0; h < p->heads; h++)
      for (int i = 0; i < p->lq; i++) {
        size_t row = ((size_t)(b * p->heads + h) * p->lq + i);
        double max = -INFINITY;
        for (int j = 0; j < p->lk; j++) {
          if (!reference_visible(p, b, h, i, j)) { s[j] = -INFINITY; continue; }
          double dot = 0;
          for (int d = 0; d < p->d; d++) {
            int64_t qi[4] = {b, h, i, d}, ki[4] = {b, h / group, j, d};
            dot += tensor_get(q, qi) * tensor_get(k, ki);
          }
          s[j] = scale * dot + (p->bias ? mask_get(p->bias, b, h, i, j) : 0.0);
          if (s[j] > max) max = s[j];
        }
        double sum = 0;
        for (int j = 0; j < p->lk; j++) sum += s[j] == -INFINITY ? 0.0 : exp(s[j] - max);
        for (int e = 0; e < p->dv; e++) out[row * p->dv + e] = 0;
        lse[row] = max == -INFINITY ? -INFINITY : max + log(sum);
        for (int j = 0; j < p->lk; j++) {
          double w = (max == -INFINITY || s[j] == -INFINITY) ? 0.0 : exp(s[j] - max) / sum;
          if (probs) probs[row * p->lk + j] = w;
          if (w == 0) continue;
          for (int e = 0; e < p->dv; e++) {
            int64_t vi[4] = {b, h / group, j, e};
            out[row * p->dv + e] += w * tensor_get(v, vi);
          }
        }
      }
  free(s);
}

void reference_backward(const problem_t* p, const tensor_t* q, const tensor_t* k, const tensor_t* v, const tensor_t* d_out,
                        const double* out, const double* probs, double* dq, double* dk, double* dv, double* dbias) {
  int group = p->heads / p->kv_heads;
  double scale = scale_of(p);
  memset(dq, 0, sizeof(double) * (size_t)p->batch * p->heads * p->lq * p->d);
  memset(dk, 0, sizeof(double) * (size_t)p->batch * p->kv_heads * p->lk * p->d);
  memset(dv, 0, sizeof(double) * (size_t)p->batch * p->kv_heads * p->lk * p->dv);
  if (dbias) memset(dbias, 0, sizeof(double) * p->bias->storage_elements);
  for (int b = 0; b < p->batch; b++)
    for (int h = 0; h < p->heads; h++)
      for (int i = 0; i < p->lq; i++) {
        size_t row = ((size_t)(b * p->heads + h) * p->lq + i);
        double delta = 0; /* sum_e dO * O */
        for (int e = 0; e < p->dv; e++) {
          int64_t oi[4] = {b, h, i, e};
          delta += tensor_get(d_out, oi) * out[row * p->dv + e];
        }
        for (int j = 0; j < p->lk; j++) {
          double w = probs[row * p->lk + j];
          if (w == 0) continue;
          size_t krow = ((size_t)(b * p->kv_heads + h / group) * p->lk + j);
          double dp = 0;
          for (int e = 0; e < p->dv; e++) {
            int64_t oi[4] = {b, h, i, e}, vi[4] = {b, h / group, j, e};
            double g = tensor_get(d_out, oi);
            dv[krow * p->dv + e] += w * g;
            dp += g * tensor_get(v, vi);
          }
          double ds = w * (dp - delta);
          for (int d = 0; d < p->d; d++) {
            int64_t qi[4] = {b, h, i, d}, ki[4] = {b, h / group, j, d};
            dq[row * p->d + d] += scale * ds * tensor_get(k, ki);
            dk[krow * p->d + d] += scale * ds * tensor_get(q, qi);
          }
          if (dbias) {
            int64_t full[4] = {b, h, i, j}, index[4] = {0, 0, 0, 0};
            int r = p->bias->t.ndim;
            for (int d = 0; d < r; d++) index[d] = full[4 - r + d];
            dbias[tensor_offset(p->bias, index)] += ds;
          }
        }
      }
}

double max_error(const tensor_t* x, const double* expected, double* max_expected) {
  int64_t index[4] = {0, 0, 0, 0};
  double worst = 0, largest = 0;
  size_t n = 0;
  if (x->storage_elements == 0) { if (max_expected) *max_expected = 0; return 0; }
  do {
    double got = tensor_get(x, index), want = expected[n++];
    double e = fabs(got - want);
    if (isnan(e)) e = INFINITY; /* a NaN output is the worst error there is */
    if (e > worst) worst = e;
    if (fabs(want) > largest) largest = fabs(want);
  } while (next_index(x, index));
  if (max_expected) *max_expected = largest;
  return worst;
}
