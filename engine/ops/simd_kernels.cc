#include "engine/ops/simd_kernels.h"

#include <immintrin.h>

#include <cmath>
#include <limits>
#include <numbers>

#include "engine/ops/vmath.h"
#include "kernels/cpu/isa.h"

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

SPARSE24_SIMD_CLONES void residual_add_f32(float* y, const float* r, int64_t n, bool relu) {
  if (relu)
    for (int64_t i = 0; i < n; ++i) {
      const float v = y[i] + r[i];
      y[i] = v < 0.0f ? 0.0f : v;
    }
  else
    for (int64_t i = 0; i < n; ++i) y[i] += r[i];
}

// The channels-last window kernels (pools, depthwise convolution) in GCC's vector extension, one vector
// type per ISA: 16 floats for AVX-512, 8 for AVX2, 4 for the baseline. A 64-byte vector in the target clones
// above was split into lanes through the stack on the AVX2 and baseline clones (hundreds of spills), so these
// are explicit per-ISA functions, chosen by the active ISA (kernels/cpu/isa.h, read once): SPARSE24_ISA then
// runs every width on one machine, as the tests do.
namespace {

// The helpers below pass vectors by value and are always inlined into the per-ISA functions, so GCC's note
// that such a signature's ABI depends on the ISA (-Wpsabi) does not apply. (To the end of the file: GCC
// reports it where the templates are instantiated, at the end of the translation unit.)
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float F32x16 __attribute__((vector_size(64)));
typedef float F32x8 __attribute__((vector_size(32)));
typedef float F32x4 __attribute__((vector_size(16)));

#define SPARSE24_AI __attribute__((always_inline)) inline

// Unaligned loads and stores through memcpy: a vector type's aligned(4) attribute does not survive being a
// template argument, and a dereference would then assume the type's full alignment.
template <class V>
SPARSE24_AI V vload(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <class V>
SPARSE24_AI void vstore(float* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}
// A depthwise sum after its epilogue (DepthwiseEpilogue), as a vector or a float.
template <class V>
SPARSE24_AI V finish(V v, const DepthwiseEpilogue& e) {
  if (e.kind == DepthwiseEpilogue::relu) return v < V{} ? V{} : v;  // a NaN stays NaN
  if (e.kind == DepthwiseEpilogue::clip) {
    const V lo = V{} + e.lo, hi = V{} + e.hi;
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
  }
  return v;
}
SPARSE24_AI float finish1(float v, const DepthwiseEpilogue& e) {
  if (e.kind == DepthwiseEpilogue::relu) return v < 0.0f ? 0.0f : v;
  if (e.kind == DepthwiseEpilogue::clip) {
    v = v < e.lo ? e.lo : v;
    return v > e.hi ? e.hi : v;
  }
  return v;
}

// A pool's step: x > m, not a max, so that a NaN x leaves m as MaxPool's comparison does; or a sum.
template <bool kMax, class V>
SPARSE24_AI V pool_step(V m, V x) {
  if constexpr (kMax)
    return x > m ? x : m;
  else
    return m + x;
}

// One window of a channels-last pool: y[c] = the max (kMax) or the sum of tap[t][c] over the taps in order,
// from -inf or 0. Four vectors of channels at a time over every tap, then one store: a running value kept
// in y was a load and a store per tap and channel, and a plain loop over a local array stayed scalar
// (ResNet's 3x3 stride-2 pool on 112x112x64, batch 1, 2 threads: 144-174 us, now 41-44).
template <class V, bool kMax>
SPARSE24_AI void pool_taps(const float* const* tap, int64_t taps, int64_t C, float* y) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  constexpr float kStart = kMax ? -std::numeric_limits<float>::infinity() : 0.0f;
  int64_t c = 0;
  for (; c + 4 * L <= C; c += 4 * L) {
    V m0 = V{} + kStart, m1 = m0, m2 = m0, m3 = m0;
    for (int64_t t = 0; t < taps; ++t) {
      const float* x = tap[t] + c;
      m0 = pool_step<kMax>(m0, vload<V>(x)), m1 = pool_step<kMax>(m1, vload<V>(x + L));
      m2 = pool_step<kMax>(m2, vload<V>(x + 2 * L)), m3 = pool_step<kMax>(m3, vload<V>(x + 3 * L));
    }
    vstore(y + c, m0), vstore(y + c + L, m1);
    vstore(y + c + 2 * L, m2), vstore(y + c + 3 * L, m3);
  }
  for (; c + L <= C; c += L) {
    V m = V{} + kStart;
    for (int64_t t = 0; t < taps; ++t) m = pool_step<kMax>(m, vload<V>(tap[t] + c));
    vstore(y + c, m);
  }
  for (; c < C; ++c) {
    float m = kStart;
    for (int64_t t = 0; t < taps; ++t) m = pool_step<kMax>(m, tap[t][c]);
    y[c] = m;
  }
}

template <class V>
SPARSE24_AI void depthwise_taps(const float* const* x, const float* const* w, int64_t taps, const float* bias,
                                int64_t C, const DepthwiseEpilogue& e, float* y) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  int64_t c = 0;
  for (; c + L <= C; c += L) {
    V sum = bias ? vload<V>(bias + c) : V{};
    for (int64_t t = 0; t < taps; ++t) sum = sum + vload<V>(w[t] + c) * vload<V>(x[t] + c);
    vstore(y + c, finish(sum, e));
  }
  for (; c < C; ++c) {
    float sum = bias ? bias[c] : 0.0f;
    for (int64_t t = 0; t < taps; ++t) sum = sum + w[t][c] * x[t][c];
    y[c] = finish1(sum, e);
  }
}

// Four pixels at a time across all their channels (the channel vectors inner: each pixel's window is read
// while it is in L1), then the single pixels left, then the channels past the last whole vector.
template <class V>
SPARSE24_AI void depthwise_row(const float* const* line, const float* const* wline, int64_t lines,
                               int64_t taps, int64_t pixel_step, int64_t tap_step, const float* bias,
                               int64_t C, int64_t pixels, const DepthwiseEpilogue& e, float* y) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  const int64_t CV = C / L * L;
  int64_t j = 0;
  for (; j + 4 <= pixels; j += 4)
    for (int64_t c = 0; c < CV; c += L) {
      const V b = bias ? vload<V>(bias + c) : V{};
      V s0 = b, s1 = b, s2 = b, s3 = b;
      for (int64_t l = 0; l < lines; ++l)
        for (int64_t k = 0; k < taps; ++k) {
          const V wv = vload<V>(wline[l] + k * C + c);
          const float* x = line[l] + j * pixel_step + k * tap_step + c;
          s0 = s0 + wv * vload<V>(x), s1 = s1 + wv * vload<V>(x + pixel_step);
          s2 = s2 + wv * vload<V>(x + 2 * pixel_step), s3 = s3 + wv * vload<V>(x + 3 * pixel_step);
        }
      vstore(y + j * C + c, finish(s0, e)), vstore(y + (j + 1) * C + c, finish(s1, e));
      vstore(y + (j + 2) * C + c, finish(s2, e)), vstore(y + (j + 3) * C + c, finish(s3, e));
    }
  for (; j < pixels; ++j)
    for (int64_t c = 0; c < CV; c += L) {
      V sum = bias ? vload<V>(bias + c) : V{};
      for (int64_t l = 0; l < lines; ++l)
        for (int64_t k = 0; k < taps; ++k)
          sum = sum + vload<V>(wline[l] + k * C + c) * vload<V>(line[l] + j * pixel_step + k * tap_step + c);
      vstore(y + j * C + c, finish(sum, e));
    }
  for (int64_t c = CV; c < C; ++c)
    for (int64_t j2 = 0; j2 < pixels; ++j2) {
      float sum = bias ? bias[c] : 0.0f;
      for (int64_t l = 0; l < lines; ++l)
        for (int64_t k = 0; k < taps; ++k)
          sum = sum + wline[l][k * C + c] * line[l][j2 * pixel_step + k * tap_step + c];
      y[j2 * C + c] = finish1(sum, e);
    }
}

// Each kernel above compiled for one ISA: Fn##_avx512, Fn##_avx2 and Fn##_base.
#define SPARSE24_PER_ISA(Fn, Body, ...)                                       \
  __attribute__((target("avx512f,avx512dq"))) void Fn##_avx512(__VA_ARGS__) { \
    Body(F32x16);                                                             \
  }                                                                           \
  __attribute__((target("avx2"))) void Fn##_avx2(__VA_ARGS__) {               \
    Body(F32x8);                                                              \
  }                                                                           \
  void Fn##_base(__VA_ARGS__) {                                               \
    Body(F32x4);                                                              \
  }

#define SPARSE24_MAX_TAPS(V) pool_taps<V, true>(tap, taps, C, y)
#define SPARSE24_SUM_TAPS(V) pool_taps<V, false>(tap, taps, C, y)
#define SPARSE24_DW_TAPS(V) depthwise_taps<V>(x, w, taps, bias, C, e, y)
#define SPARSE24_DW_ROW(V) \
  depthwise_row<V>(line, wline, lines, taps, pixel_step, tap_step, bias, C, pixels, e, y)
SPARSE24_PER_ISA(max_taps, SPARSE24_MAX_TAPS, const float* const* tap, int64_t taps, int64_t C, float* y)
SPARSE24_PER_ISA(sum_taps, SPARSE24_SUM_TAPS, const float* const* tap, int64_t taps, int64_t C, float* y)
SPARSE24_PER_ISA(depthwise_taps, SPARSE24_DW_TAPS, const float* const* x, const float* const* w, int64_t taps,
                 const float* bias, int64_t C, DepthwiseEpilogue e, float* y)
SPARSE24_PER_ISA(depthwise_row, SPARSE24_DW_ROW, const float* const* line, const float* const* wline,
                 int64_t lines, int64_t taps, int64_t pixel_step, int64_t tap_step, const float* bias,
                 int64_t C, int64_t pixels, DepthwiseEpilogue e, float* y)
#undef SPARSE24_DW_ROW
#undef SPARSE24_DW_TAPS
#undef SPARSE24_SUM_TAPS
#undef SPARSE24_MAX_TAPS
#undef SPARSE24_PER_ISA
#undef SPARSE24_AI

cpu::Isa window_isa() {
  static const cpu::Isa isa = cpu::active_isa();
  return isa;
}

}  // namespace

namespace {

// Calls the AVX-512, AVX2 or baseline build of a window kernel, after the active ISA.
template <class... Args>
void by_isa(void (*avx512)(Args...), void (*avx2)(Args...), void (*base)(Args...), Args... args) {
  switch (window_isa()) {
    case cpu::Isa::avx512:
      return avx512(args...);
    case cpu::Isa::avx2:
      return avx2(args...);
    case cpu::Isa::ref:
      return base(args...);
  }
}

}  // namespace

void max_taps_f32(const float* const* tap, int64_t taps, int64_t C, float* y) {
  by_isa(max_taps_avx512, max_taps_avx2, max_taps_base, tap, taps, C, y);
}

void sum_taps_f32(const float* const* tap, int64_t taps, int64_t C, float* y) {
  by_isa(sum_taps_avx512, sum_taps_avx2, sum_taps_base, tap, taps, C, y);
}

void depthwise_taps_f32(const float* const* x, const float* const* w, int64_t taps, const float* bias,
                        int64_t C, DepthwiseEpilogue e, float* y) {
  by_isa(depthwise_taps_avx512, depthwise_taps_avx2, depthwise_taps_base, x, w, taps, bias, C, e, y);
}

void depthwise_row_f32(const float* const* line, const float* const* wline, int64_t lines, int64_t taps,
                       int64_t pixel_step, int64_t tap_step, const float* bias, int64_t C, int64_t pixels,
                       DepthwiseEpilogue e, float* y) {
  by_isa(depthwise_row_avx512, depthwise_row_avx2, depthwise_row_base, line, wline, lines, taps, pixel_step,
         tap_step, bias, C, pixels, e, y);
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

SPARSE24_SIMD_CLONES void attention_softmax_row_f32_generic(float* row, const float* mask, int64_t mask_step,
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

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12's AVX-512 headers fill the unused operand of unmasked intrinsics with an undefined register and then
// warn about it (-W[maybe-]uninitialized, a known false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// 16 lanes at a time, with FMA: GCC's clones use 256-bit vectors and no contraction. e^x as 2^n · p(r):
// n = round(x·log2 e), r = x - n·ln 2 (two FMAs, ln 2 split), p the degree-6 Taylor polynomial (truncation
// below 2e-7 relative on |r| <= ln2/2), 2^n applied by vscalefps (exact, down to subnormals and zero).
__attribute__((target("avx512f,avx512dq,fma"))) void attention_softmax_row_f32_avx512(float* row,
                                                                                      const float* mask,
                                                                                      int64_t mask_step,
                                                                                      int64_t n) {
  const auto lanes = [n](int64_t i) {
    return n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
  };
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 mask_one = mask && mask_step == 0 ? _mm512_set1_ps(mask[0]) : _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i);
    __m512 x = _mm512_maskz_loadu_ps(k, row + i);
    if (mask) x = _mm512_add_ps(x, mask_step == 0 ? mask_one : _mm512_maskz_loadu_ps(k, mask + i));
    _mm512_mask_storeu_ps(row + i, k, x);
    vmax = _mm512_mask_max_ps(vmax, k, x, vmax);  // skips NaN, as the generic kernel; e^x brings it back
  }
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  const __m512 log2e = _mm512_set1_ps(float(std::numbers::log2e)), lo = _mm512_set1_ps(-110.0f),
               hi = _mm512_set1_ps(89.0f);
  const __m512 ln2_hi = _mm512_set1_ps(-355.0f / 512.0f),
               ln2_lo = _mm512_set1_ps(-float(std::numbers::ln2 - 355.0 / 512.0));
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i);
    // max(lo, ·) and min(hi, ·) return their second operand for NaN, so NaN flows through.
    const __m512 x =
        _mm512_min_ps(hi, _mm512_max_ps(lo, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + i), mx)));
    const __m512 t =
        _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_fmadd_ps(t, ln2_lo, _mm512_fmadd_ps(t, ln2_hi, x));
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 e = _mm512_maskz_scalef_ps(k, p, t);
    _mm512_mask_storeu_ps(row + i, k, e);
    vsum = _mm512_add_ps(vsum, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(i);
    _mm512_mask_storeu_ps(row + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + i), inv));
  }
}
#pragma GCC diagnostic pop
#endif

void attention_softmax_row_f32(float* row, const float* mask, int64_t mask_step, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool avx512 = cpu::active_isa() == cpu::Isa::avx512;
  if (avx512) return attention_softmax_row_f32_avx512(row, mask, mask_step, n);
#endif
  attention_softmax_row_f32_generic(row, mask, mask_step, n);
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
