#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "format/dtype.h"
#include "format/tensor.h"

namespace sparse24 {

// GCC's _Float16 (x86-64, SSE2 soft conversion) is an independent oracle for f16 rounding.
static uint16_t oracle_f16(float f) {
  _Float16 h = static_cast<_Float16>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

TEST(DType, F16RoundTripsEveryBitPattern) {
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = f16_to_f32(uint16_t(b));
    _Float16 h;
    uint16_t bits = uint16_t(b);
    std::memcpy(&h, &bits, 2);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(float(h)));
      continue;
    }
    ASSERT_EQ(f, float(h)) << "bits " << b;
    ASSERT_EQ(f32_to_f16(f), bits) << "bits " << b;
  }
}

TEST(DType, F16RoundingMatchesCompiler) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = rng();
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), oracle_f16(f)) << f;
  }
  for (float f : {65504.0f, 65519.0f, 65520.0f, 1e-8f, 2.98023224e-8f, 5.96046448e-8f, -0.0f})
    EXPECT_EQ(f32_to_f16(f), oracle_f16(f)) << f;
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly half-way between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);  // 1 + 3·2^-8: half-way, rounds up to even 0x3f82
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = bf16_to_f32(uint16_t(b));
    if (!std::isnan(f)) {
      ASSERT_EQ(f32_to_bf16(f), b);
    }
  }
}

TEST(Tensor, SetSaturatesIntegers) {
  Tensor t(DType::i8, {3});
  t.set(0, 300.0f);
  t.set(1, -300.0f);
  t.set(2, 2.5f);
  EXPECT_EQ(t.data<int8_t>()[0], 127);
  EXPECT_EQ(t.data<int8_t>()[1], -128);
  EXPECT_EQ(t.data<int8_t>()[2], 2);  // nearest even
}

TEST(Tensor, StorageIsAligned) {
  Tensor t(DType::f32, {3, 5});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.bytes()) % 64, 0u);
}

}  // namespace sparse24
