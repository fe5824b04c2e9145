// The direct convolution (conv_direct_impl.h) with 512-bit vectors: 4 pixels x up to 64 output channels per
// step.
#include <immintrin.h>

#include "engine/ops/conv_direct_impl.h"

namespace sparse24::engine::ops {
namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr int64_t lanes = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_load_ps(p); }
  static reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg relu(reg a) { return _mm512_max_ps(_mm512_setzero_ps(), a); }  // NaN stays NaN
  static void store(float* p, reg r, int64_t n) {
    if (n == lanes) return _mm512_storeu_ps(p, r);
    _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), r);
  }
};

}  // namespace

// As few registers per pixel as hold the output channels, four (64 channels) at most: with four always, a
// 16-channel stem (the demo CNN's) computed each output four times over, three of them into padding.
void conv_direct_rows_avx512(const DirectConvArgs& a, int64_t row0, int64_t row1) {
  if (a.oc <= 16) return direct_conv_rows<Avx512, 1>(a, row0, row1);
  if (a.oc <= 32) return direct_conv_rows<Avx512, 2>(a, row0, row1);
  if (a.oc <= 48) return direct_conv_rows<Avx512, 3>(a, row0, row1);
  direct_conv_rows<Avx512, 4>(a, row0, row1);
}

}  // namespace sparse24::engine::ops
