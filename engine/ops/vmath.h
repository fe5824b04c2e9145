#pragma once
// exp and erf written so that GCC vectorises the loops that call them (std::exp and std::erf are opaque calls
// that keep every element-wise loop scalar): only arithmetic, comparisons and selects, no branches or tables.
// Accuracy (unit-tested against std::): exp within 2 ulp-ish (2e-7 relative), erf within 3e-7 absolute.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>

namespace sparse24::engine::ops {

/// take_a ? a : b as a bitwise blend. A plain ?: between two computed floats (or a clamp of a value computed
/// on afterwards) keeps GCC from vectorising under -ftrapping-math; integer masks do not.
inline float blend(bool take_a, float a, float b) {
  const uint32_t m = 0u - uint32_t(take_a);
  return std::bit_cast<float>((std::bit_cast<uint32_t>(a) & m) | (std::bit_cast<uint32_t>(b) & ~m));
}

/// e^x for float x: +inf past 88.72, subnormal below -87.3, 0 below -104, NaN stays NaN.
inline float vexp(float x) {
  // x = n·ln2 + r with n an integer and |r| <= ln2/2; ln2 is split into a short high part (n·hi is exact)
  // and the remainder, so r keeps full precision. e^r by its Taylor series to degree 7 (truncation below
  // 1e-8 relative). 2^n is applied as two halves built in the exponent bits, so that n may reach -159
  // (subnormal results, and 0 from x = -110 on) and +128 (overflow to inf) without leaving the exponent
  // range.
  constexpr float kLog2e = float(std::numbers::log2e);
  constexpr float kLn2Hi = 355.0f / 512.0f;
  constexpr float kLn2Lo = float(std::numbers::ln2 - 355.0 / 512.0);
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds to an integer
  // NaN -> the low clamp, so no NaN reaches the integer conversion (the final select restores it).
  const float c = blend(!(x >= -110.0f), -110.0f, blend(x > 89.0f, 89.0f, x));
  const float n = (c * kLog2e + kRound) - kRound;
  const float r = (c - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t ni = int32_t(n), half = ni / 2;
  const float s1 = std::bit_cast<float>((half + 127) << 23),
              s2 = std::bit_cast<float>((ni - half + 127) << 23);
  const float y = (p * s1) * s2;
  return blend(x != x, x, y);
}

namespace detail {
/// Terms of erf's Taylor series used below |x| = 1.5.
constexpr int kErfTerms = 17;
/// Taylor coefficients of erf(x)/x in x²: 2/√π · (-1)^n / (n! (2n + 1)), computed at compile time.
struct ErfTaylor {
  float c[kErfTerms];
  constexpr ErfTaylor() : c() {
    double factorial = 1;
    for (int n = 0; n < kErfTerms; ++n) {
      if (n > 0) factorial *= n;
      c[n] = float((n % 2 ? -2.0 : 2.0) * std::numbers::inv_sqrtpi / (factorial * (2 * n + 1)));
    }
  }
};
/// The coefficient table.
inline constexpr ErfTaylor kErfTaylor{};
}  // namespace detail

/// erf(x) for float x.
inline float verf(float x) {
  // |x| < 1.5: the Taylor series (17 terms: truncation below 1e-9; a larger range would lose digits to
  // cancellation between its terms). |x| >= 1.5: erfc from its continued fraction
  // erfc(a) = e^(-a²)/√π / (a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))) to depth 16 (error below 5e-8), with
  // a clamped to 4, where erf is 1 to float precision.
  const float a = std::fabs(x);
  const float x2 = x * x;
  float s = detail::kErfTaylor.c[detail::kErfTerms - 1];
  for (int n = detail::kErfTerms - 2; n >= 0; --n) s = s * x2 + detail::kErfTaylor.c[n];
  const float near = s * x;
  const float b = blend(a < 1.5f, 1.5f, blend(a > 4.0f, 4.0f, a));
  // The fraction's convergents A_k / B_k by the forward recurrence (one division instead of sixteen; all
  // terms are positive, so nothing cancels, and A_16 < 4e11 at a = 4).
  float a_prev = 1.0f, a_cur = b, b_prev = 0.0f, b_cur = 1.0f;
  for (int k = 1; k <= 16; ++k) {
    const float a_next = b * a_cur + 0.5f * float(k) * a_prev;
    const float b_next = b * b_cur + 0.5f * float(k) * b_prev;
    a_prev = a_cur;
    a_cur = a_next;
    b_prev = b_cur;
    b_cur = b_next;
  }
  const float erfc = vexp(-b * b) * float(std::numbers::inv_sqrtpi) * b_cur / a_cur;
  const float far = std::copysign(1.0f - erfc, x);
  return blend(x != x, x, blend(a < 1.5f, near, far));
}

/// GELU, x·Φ(x), for the activations after a linear layer: Φ from erfc in the Abramowitz–Stegun form
/// (7.1.26, |error of erf| <= 1.5e-7), which costs one division and one exp instead of verf's series and
/// continued fraction. Φ(x) = erfc(-x/√2)/2 is taken on |x| so nothing cancels for negative x.
inline float vgelu(float x) {
  const float z = std::fabs(x) * float(1.0 / std::numbers::sqrt2);
  const float t = 1.0f / (1.0f + 0.3275911f * z);
  const float poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float half_erfc = 0.5f * poly * vexp(-z * z);  // Φ(-|x|)
  return x * blend(x >= 0.0f, 1.0f - half_erfc, half_erfc);
}

}  // namespace sparse24::engine::ops
