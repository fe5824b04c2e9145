#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "reference/gemm.h"
#include "test_util.h"

namespace sparse24 {
using reference::Activation;

TEST(Reference, DenseMatchesHandComputedExample) {
  // X [2][4], W [3][4]: Y = X·Wᵀ + b
  float X[8] = {1, 2, 3, 4, -1, 0, 1, 2};
  float W[12] = {1, 0, 0, 1, 0, 1, 1, 0, 2, 2, 2, 2};
  float b[3] = {0.5f, -100, 0};
  float Y[6];
  reference::gemm_dense_f32(2, 3, 4, X, 4, W, 4, b, Activation::none, Y, 3);
  float want[6] = {5.5f, -95, 20, 1.5f, -99, 4};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Y[i], want[i]) << i;
  reference::gemm_dense_f32(2, 3, 4, X, 4, W, 4, b, Activation::relu, Y, 3);
  EXPECT_EQ(Y[1], 0.0f);
  EXPECT_EQ(Y[0], 5.5f);
  reference::gemm_dense_f32(2, 3, 4, X, 4, W, 4, b, Activation::relu6, Y, 3);
  EXPECT_EQ(Y[0], 5.5f);
  EXPECT_EQ(Y[1], 0.0f);
  EXPECT_EQ(Y[2], 6.0f);
}

TEST(Reference, GeluIsTheErfForm) {
  EXPECT_EQ(reference::gelu(0.0f), 0.0f);
  EXPECT_NEAR(reference::gelu(1.0f), 0.8413447460685429f, 1e-7);
  EXPECT_NEAR(reference::gelu(-1.0f), -0.15865525393145707f, 1e-7);
}

// Shapes for the sparse-vs-dense identity: K=4, N=1, M=1 and odd N included.
struct Shape {
  int64_t M, N, K;
};
static const Shape kShapes[] = {{1, 1, 4},   {1, 7, 4},   {3, 1, 8},    {5, 3, 12},
                                {1, 33, 64}, {7, 17, 20}, {16, 64, 128}};

class Reference24 : public ::testing::TestWithParam<DType> {};

// The 2:4 GEMM from the compressed form equals the dense GEMM on the decompressed weight bit for bit, on
// integer data and on arbitrary floats (skipping a zero product never changes an f32 sum).
TEST_P(Reference24, SparseEqualsDenseOnDecompressedBitForBit) {
  DType dtype = GetParam();
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  for (const Shape& s : kShapes)
    for (bool integer : {true, false})
      for (Activation act : {Activation::none, Activation::relu, Activation::gelu, Activation::relu6}) {
        Tensor w = test::random_24_tensor(dtype, s.N, s.K, uint32_t(s.M * 7 + s.N * 3 + s.K));
        if (!integer)
          for (int64_t i = 0; i < w.numel(); ++i)
            if (w.get(i) != 0) w.set(i, normal(rng));
        int64_t ldx = s.K + 3;  // strided rows
        std::vector<float> X(size_t(s.M * ldx)), bias(size_t(s.N));
        for (auto& x : X) x = integer ? float(int(rng() % 15) - 7) : normal(rng);
        for (auto& b : bias) b = integer ? float(int(rng() % 9) - 4) : normal(rng);
        Tensor dense_w = decompress_24(compress_24(w)).to(DType::f32);
        std::vector<float> want(size_t(s.M * s.N)), got(size_t(s.M * s.N));
        reference::gemm_dense_f32(s.M, s.N, s.K, X.data(), ldx, dense_w.data<float>(), s.K, bias.data(), act,
                                  want.data(), s.N);
        reference::gemm_24_f32(s.M, X.data(), ldx, compress_24(w), bias.data(), act, got.data(), s.N);
        ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * 4), 0)
            << dtype_name(dtype) << " M=" << s.M << " N=" << s.N << " K=" << s.K << " integer=" << integer;
        bool any_nonzero = false;
        for (float v : want) any_nonzero |= v != 0;
        if (act == Activation::none) {
          EXPECT_TRUE(any_nonzero);  // an all-zero result would prove nothing
        }
      }
}

INSTANTIATE_TEST_SUITE_P(FloatValues, Reference24, ::testing::Values(DType::f32, DType::f16, DType::bf16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Reference24, Int8SparseEqualsDenseExactly) {
  std::mt19937 rng(5);
  for (const Shape& s : kShapes) {
    Tensor w = test::random_24_tensor(DType::i8, s.N, s.K, uint32_t(s.N + s.K));
    for (int64_t i = 0; i < w.numel(); ++i)
      if (w.get(i) != 0) w.set(i, float(int(rng() % 255) - 127));  // the full int8 range
    int64_t ldx = s.K + 1;
    std::vector<int8_t> X(size_t(s.M * ldx));
    for (auto& x : X) x = int8_t(int(rng() % 256) - 128);
    std::vector<int32_t> want(size_t(s.M * s.N)), got(size_t(s.M * s.N));
    reference::gemm_dense_i8(s.M, s.N, s.K, X.data(), ldx, w.data<int8_t>(), s.K, want.data(), s.N);
    reference::gemm_24_i8(s.M, X.data(), ldx, compress_24(w), got.data(), s.N);
    EXPECT_EQ(want, got) << "M=" << s.M << " N=" << s.N << " K=" << s.K;
  }
}

}  // namespace sparse24
