#pragma once
// Shared helpers for the unit tests: deterministic integer-valued data and 2:4 tensors.
#include <random>

#include "format/pattern24.h"

namespace sparse24::test {

/// A [rows][cols] tensor of small nonzero integers in [-7, 7] (exact in every dtype).
inline Tensor random_int_tensor(DType dtype, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(1, 7), sign(0, 1);
  Tensor t(dtype, {rows, cols});
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, float(dist(rng) * (sign(rng) ? 1 : -1)));
  return t;
}

/// A random 2:4 tensor: every group keeps a random legal pair of small integers; some groups keep fewer.
inline Tensor random_24_tensor(DType dtype, int64_t rows, int64_t cols, uint32_t seed) {
  Tensor t = random_int_tensor(dtype, rows, cols, seed);
  std::mt19937 rng(seed + 1);
  static const int pairs[6][2] = {{0, 1}, {0, 2}, {1, 2}, {0, 3}, {1, 3}, {2, 3}};
  for (int64_t g = 0; g < t.numel() / 4; ++g) {
    const int* p = pairs[rng() % 6];
    int drop_extra = rng() % 8 == 0 ? p[rng() % 2] : -1;  // now and then a group with a single nonzero
    for (int i = 0; i < 4; ++i)
      if ((i != p[0] && i != p[1]) || i == drop_extra) t.set(g * 4 + i, 0.0f);
  }
  return t;
}

inline bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0;
}

}  // namespace sparse24::test
