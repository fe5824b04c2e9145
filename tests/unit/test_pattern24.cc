#include <gtest/gtest.h>

#include "format/pattern24.h"
#include "test_util.h"
#include "util/error.h"

namespace sparse24 {

static const DType kAllDtypes[] = {DType::f32, DType::f16, DType::bf16, DType::i8};

TEST(Nibble, ExactlySixLegalValues) {
  int legal = 0;
  for (int n = 0; n < 16; ++n) legal += is_legal_nibble(uint8_t(n));
  EXPECT_EQ(legal, 6);
  for (uint8_t n : {0x4, 0x8, 0x9, 0xC, 0xD, 0xE}) EXPECT_TRUE(is_legal_nibble(n)) << int(n);
}

TEST(MagnitudeMask, KeepsTwoLargestTiesToLowerIndex) {
  Tensor w(DType::f32, {1, 16});
  float v[16] = {1,  -5, 3,  2,  /* keep 1,2 */
                 4,  4,  4,  4,  /* ties: keep 0,1 */
                 0,  0,  0,  -1, /* keep 0?,3: |0| ties among 0,1,2 -> lowest index 0 */
                 -2, 2,  -3, 3 /* 3 and 3 tie for first: keep 2,3 */};
  std::memcpy(w.data<float>(), v, sizeof v);
  Mask24 m = magnitude_mask(w);
  EXPECT_EQ(m.nibble(0, 0), make_nibble(1, 2));
  EXPECT_EQ(m.nibble(0, 1), make_nibble(0, 1));
  EXPECT_EQ(m.nibble(0, 2), make_nibble(0, 3));
  EXPECT_EQ(m.nibble(0, 3), make_nibble(2, 3));
  apply_mask(w, m);
  EXPECT_EQ(check_24(w).fraction(), 1.0);
  EXPECT_EQ(w.data<float>()[0], 0.0f);
  EXPECT_EQ(w.data<float>()[1], -5.0f);
}

TEST(MagnitudeMask, RefusesNaNAndInfNamingTheTensor) {
  Tensor w(DType::f32, {2, 4});
  w.set(6, NAN);
  try {
    magnitude_mask(w, "fc1.weight");
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc1.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[1, 2]"), std::string::npos);
  }
  w.set(6, INFINITY);
  EXPECT_THROW(magnitude_mask(w, "w"), Error);
}

TEST(Check24, CountsConformingGroups) {
  Tensor w = test::random_int_tensor(DType::f32, 4, 8, 1);  // no zeros: nothing conforms
  EXPECT_EQ(check_24(w).groups, 8);
  EXPECT_EQ(check_24(w).conforming, 0);
  w.set(0, 0);
  w.set(1, 0);
  EXPECT_EQ(check_24(w).conforming, 1);
  EXPECT_DOUBLE_EQ(check_24(w).fraction(), 1.0 / 8);
}

TEST(Compress, RoundTripIsIdentityForEveryDtype) {
  for (DType t : kAllDtypes)
    for (auto [rows, cols] : {std::pair{1, 4}, {3, 8}, {17, 64}, {64, 128}, {5, 12}}) {
      Tensor w = test::random_24_tensor(t, rows, cols, uint32_t(rows * 131 + cols));
      Sparse24 s = compress_24(w);
      EXPECT_EQ(s.values.size(), size_t(rows * cols / 2) * dtype_size(t));
      EXPECT_EQ(s.meta.size(), size_t((rows * cols / 4 + 1) / 2));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < cols / 4; ++g) ASSERT_TRUE(is_legal_nibble(s.nibble(r, g)));
      EXPECT_TRUE(test::same_bytes(decompress_24(s), w)) << dtype_name(t) << " " << rows << "x" << cols;
    }
}

TEST(Compress, KeptValuesAreInOrder) {
  Tensor w(DType::f32, {1, 8});
  float v[8] = {0, 5, 0, -6, 7, 0, 0, 0};
  std::memcpy(w.data<float>(), v, sizeof v);
  Sparse24 s = compress_24(w);
  const float* vals = s.value_data<float>();
  EXPECT_EQ(vals[0], 5.0f);
  EXPECT_EQ(vals[1], -6.0f);
  EXPECT_EQ(s.nibble(0, 0), make_nibble(1, 3));
  EXPECT_EQ(vals[2], 7.0f);  // a group with one nonzero stores it plus a zero at the lowest free index
  EXPECT_EQ(vals[3], 0.0f);
  EXPECT_EQ(s.nibble(0, 1), make_nibble(0, 1));
  EXPECT_EQ(s.meta[0], 0xD | (0x4 << 4));
}

TEST(Compress, RefusesNon24NamingTheGroup) {
  Tensor w = test::random_24_tensor(DType::f32, 3, 8, 3);
  w.set(2 * 8 + 4, 1.0f);
  w.set(2 * 8 + 5, 1.0f);
  w.set(2 * 8 + 6, 1.0f);
  try {
    compress_24(w, "layer3");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer3: row 2 group 1"), std::string::npos) << e.what();
  }
}

TEST(Compress, RefusesKNotMultipleOf4) {
  EXPECT_THROW(compress_24(Tensor(DType::f32, {2, 6})), Error);
  EXPECT_THROW(magnitude_mask(Tensor(DType::f32, {2, 6})), Error);
  EXPECT_THROW(compress_24(Tensor(DType::f32, {8})), Error);
}

}  // namespace sparse24
