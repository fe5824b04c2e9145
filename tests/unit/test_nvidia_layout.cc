#include <gtest/gtest.h>

#include <cstdlib>

#include "format/npy.h"
#include "format/nvidia_layout.h"
#include "test_util.h"
#include "util/error.h"

namespace sparse24 {

// tests/data/nvidia_24_layouts.npz, made on an H200 by PyTorch's CUTLASS conversion (see its README), is
// unpacked into this folder by the ctest fixture.
static std::filesystem::path vectors_dir() {
  const char* d = std::getenv("SPARSE24_NVIDIA_VECTORS");
  if (!d) throw std::runtime_error("SPARSE24_NVIDIA_VECTORS is not set: run the tests through ctest");
  return d;
}

static Tensor tensor_from_bits(const NpyArray& a, DType dtype) {
  Tensor t(dtype, a.shape);
  EXPECT_EQ(a.data.size(), t.nbytes());
  std::memcpy(t.bytes(), a.data.data(), t.nbytes());
  return t;
}

class NvidiaVectors : public ::testing::TestWithParam<DType> {};

TEST_P(NvidiaVectors, ReproducesCutlassValuesAndMetadataBitForBit) {
  DType dtype = GetParam();
  std::string name(dtype_name(dtype));
  NpyArray dense = read_npy(vectors_dir() / (name + "_dense_bits.npy"));
  NpyArray values = read_npy(vectors_dir() / (name + "_cutlass_values_bits.npy"));
  NpyArray meta = read_npy(vectors_dir() / (name + "_cutlass_meta.npy"));
  ASSERT_EQ(dense.shape, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(meta.descr, dtype == DType::i8 ? "<i4" : "<i2");

  Tensor w = tensor_from_bits(dense, dtype);
  Sparse24 nv = to_nvidia_layout(compress_24(w, name));
  ASSERT_EQ(nv.values.size(), values.data.size());
  EXPECT_EQ(std::memcmp(nv.values.data(), values.data.data(), values.data.size()), 0) << "values differ";
  ASSERT_EQ(nv.meta.size(), meta.data.size());
  size_t first_diff = nv.meta.size();
  for (size_t i = 0; i < nv.meta.size() && first_diff == nv.meta.size(); ++i)
    if (nv.meta[i] != uint8_t(meta.data[i])) first_diff = i;
  EXPECT_EQ(first_diff, nv.meta.size()) << "metadata differs first at byte " << first_diff;

  // And back: NVIDIA's buffers read through the inverse give the original dense matrix.
  Sparse24 theirs = nv;
  std::memcpy(theirs.meta.data(), meta.data.data(), meta.data.size());
  EXPECT_TRUE(test::same_bytes(decompress_24(from_nvidia_layout(theirs)), w));
}

TEST_P(NvidiaVectors, LayoutThenInverseIsIdentity) {
  DType dtype = GetParam();
  NvidiaTile tile = nvidia_tile(dtype);
  for (int rm : {1, 2, 3})
    for (int cm : {1, 2, 5}) {
      Tensor w = test::random_24_tensor(dtype, tile.row_multiple * rm, tile.col_multiple * cm,
                                        uint32_t(rm * 10 + cm));
      Sparse24 p = compress_24(w);
      Sparse24 nv = to_nvidia_layout(p);
      EXPECT_EQ(nv.meta.size(), p.meta.size());
      Sparse24 back = from_nvidia_layout(nv);
      EXPECT_EQ(back.meta, p.meta);
      EXPECT_TRUE(test::same_bytes(decompress_24(back), w));
    }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NvidiaVectors, ::testing::Values(DType::f16, DType::bf16, DType::i8),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(NvidiaLayout, RefusesPartialTilesAndF32) {
  EXPECT_THROW(to_nvidia_layout(compress_24(test::random_24_tensor(DType::f16, 16, 32, 1))), Error);
  EXPECT_THROW(to_nvidia_layout(compress_24(test::random_24_tensor(DType::i8, 16, 32, 1))), Error);
  EXPECT_THROW(to_nvidia_layout(compress_24(test::random_24_tensor(DType::f32, 32, 32, 1))), Error);
}

TEST(NvidiaLayout, RefusesIllegalNibbles) {
  Sparse24 nv = to_nvidia_layout(compress_24(test::random_24_tensor(DType::f16, 32, 32, 2)));
  nv.meta[5] = 0xff;
  EXPECT_THROW(from_nvidia_layout(nv), Error);
}

}  // namespace sparse24
