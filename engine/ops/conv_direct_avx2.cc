// The direct convolution (conv_direct_impl.h) with 256-bit vectors: 4 pixels x 16 output channels per step,
// which fits AVX2's 16 registers.
#include <immintrin.h>

#include "engine/ops/conv_direct_impl.h"

namespace sparse24::engine::ops {
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr int64_t lanes = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_load_ps(p); }
  static reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg relu(reg a) { return _mm256_max_ps(_mm256_setzero_ps(), a); }  // NaN stays NaN
  static void store(float* p, reg r, int64_t n) {
    if (n == lanes) return _mm256_storeu_ps(p, r);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), lane), r);
  }
};

}  // namespace

void conv_direct_rows_avx2(const DirectConvArgs& a, int64_t row0, int64_t row1) {
  if (a.oc <= 8) return direct_conv_rows<Avx2, 1>(a, row0, row1);  // one register holds them all
  direct_conv_rows<Avx2, 2>(a, row0, row1);
}

}  // namespace sparse24::engine::ops
