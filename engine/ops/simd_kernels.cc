#include "engine/ops/simd_kernels.h"

#include <cmath>
#include <limits>
#include <numbers>

#include "engine/ops/vmath.h"

// Function multi-versioning: GCC builds each function below three times and an ifunc resolver picks one.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SPARSE24_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SPARSE24_SIMD_CLONES
#endif

namespace sparse24::engine::ops {

SPARSE24_SIMD_CLONES void erf_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = verf(x[i]);
}

SPARSE24_SIMD_CLONES void gelu_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = vgelu(x[i]);
}

SPARSE24_SIMD_CLONES void sigmoid_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + vexp(-x[i]));
}

SPARSE24_SIMD_CLONES void softmax_row_f32(const float* x, float* y, int64_t n, bool log_softmax) {
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  // The sum is kept in double: rows can be long and the result is held to 1e-5 relative.
  double sum = 0;
  if (log_softmax) {
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += vexp(x[i] - mx);
    // (x - max) first: adding log(sum) to a large max would round away the small differences.
    const float log_sum = float(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mx) - log_sum;
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) {
      const float e = vexp(x[i] - mx);
      y[i] = e;
      sum += e;
    }
    const float scale = float(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= scale;
  }
}

SPARSE24_SIMD_CLONES void attention_softmax_row_f32(float* row, const float* mask, int64_t mask_step,
                                                    int64_t n) {
  if (mask && mask_step == 0) {
    const float m = mask[0];
    for (int64_t i = 0; i < n; ++i) row[i] += m;
  } else if (mask) {
    for (int64_t i = 0; i < n; ++i) row[i] += mask[i];
  }
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t i = 0; i < n; ++i) mx = row[i] > mx ? row[i] : mx;
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    const float e = vexp(row[i] - mx);
    row[i] = e;
    sum += e;
  }
  const float scale = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) row[i] *= scale;
}

SPARSE24_SIMD_CLONES void layer_norm_row_f32(const float* x, const float* scale, const float* bias, float* y,
                                             int64_t n, double epsilon, float* mean_out, float* inv_std_out) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = n ? sum / double(n) : 0.0;
  double sq = 0;
#pragma omp simd reduction(+ : sq)
  for (int64_t i = 0; i < n; ++i) {
    const double c = x[i] - mean;
    sq += c * c;
  }
  const float m = float(mean), inv_std = float(1.0 / std::sqrt((n ? sq / double(n) : 0.0) + epsilon));
  if (bias)
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * inv_std * scale[i] + bias[i];
  else
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * inv_std * scale[i];
  *mean_out = m;
  *inv_std_out = inv_std;
}

}  // namespace sparse24::engine::ops
