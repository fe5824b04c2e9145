#include <gtest/gtest.h>

#include <fstream>

#include "format/npy.h"
#include "test_util.h"
#include "util/error.h"

namespace sparse24 {

TEST(Npy, WriteThenReadIsIdentity) {
  auto dir = std::filesystem::temp_directory_path() / "s24_npy_test";
  std::filesystem::create_directories(dir);
  for (DType t : {DType::f32, DType::f16, DType::i8, DType::i32}) {
    Tensor x = test::random_int_tensor(t, 3, 5, 1);
    write_npy(dir / "x.npy", x);
    EXPECT_TRUE(test::same_bytes(read_npy(dir / "x.npy").to_tensor(), x)) << dtype_name(t);
  }
  Tensor v(DType::f32, {7});
  write_npy(dir / "v.npy", v);
  EXPECT_EQ(read_npy(dir / "v.npy").shape, (std::vector<int64_t>{7}));
  std::filesystem::remove_all(dir);
}

TEST(Npy, RejectsMissingAndMalformedFiles) {
  EXPECT_THROW(read_npy("/nonexistent/x.npy"), Error);
  auto path = std::filesystem::temp_directory_path() / "s24_bad.npy";
  std::ofstream(path) << "not numpy";
  EXPECT_THROW(read_npy(path), Error);
  std::filesystem::remove(path);
}

}  // namespace sparse24
