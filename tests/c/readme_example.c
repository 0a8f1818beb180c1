/* The README's C example, compiled and run by the C ABI's CMake build in CI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention_engine.h"

static int run(void) {
  // README:c-begin
  // q, k, v, out stored [batch, seq, heads, dim] (FlashAttention's layout): DLPack strides make it the logical
  // [batch, heads, seq, dim] view the library takes, with no copy.
  enum { B = 1, S = 128, H = 8, D = 64 };
  float* q = calloc(B * S * H * D, sizeof(float));
  float* k = calloc(B * S * H * D, sizeof(float));
  float* v = calloc(B * S * H * D, sizeof(float));
  float* out = calloc(B * S * H * D, sizeof(float));
  float* lse = calloc(B * H * S, sizeof(float));
  for (int i = 0; i < B * S * H * D; i++) { q[i] = (float)(i % 7) / 7; k[i] = (float)(i % 5) / 5; v[i] = (float)(i % 3); }

  int64_t shape[4] = {B, H, S, D}, strides[4] = {S * H * D, D, H * D, 1};
  int64_t lse_shape[3] = {B, H, S};
  DLDataType f32 = {kDLFloat, 32, 1};
  DLDevice cpu = {kDLCPU, 0};
  DLTensor tq = {q, cpu, 4, f32, shape, strides, 0}, tk = {k, cpu, 4, f32, shape, strides, 0};
  DLTensor tv = {v, cpu, 4, f32, shape, strides, 0}, tout = {out, cpu, 4, f32, shape, strides, 0};
  DLTensor tlse = {lse, cpu, 3, f32, lse_shape, NULL, 0}; // NULL strides: compact row-major

  if (AE_CHECK_ABI() != AE_OK) { fprintf(stderr, "%s\n", ae_last_error()); return 1; }
  ae_options options = ae_options_default();
  options.mask = AE_MASK_CAUSAL;
  options.lse = &tlse;
  ae_status status = ae_forward(&tq, &tk, &tv, &tout, &options);
  if (status != AE_OK) { fprintf(stderr, "%s: %s\n", ae_status_name(status), ae_last_error()); return 1; }
  printf("out[0, 0, 0, 0] = %f, lse[0, 0, 0] = %f\n", out[0], lse[0]);
  // README:c-end
  /* Query 0 of head 0 sees only key 0: its output row is v's row 0, its LSE that one scaled score. */
  double score = 0;
  int ok = 1;
  for (int d = 0; d < D; d++) { score += (double)q[d] * k[d]; ok &= out[d] == v[d]; }
  ok &= fabs(lse[0] - score / 8.0) < 1e-5;
  free(q); free(k); free(v); free(out); free(lse);
  return ok ? 0 : 1;
}

int main(void) { return run(); }
