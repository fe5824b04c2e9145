#include "format/pattern24.h"

#include <cmath>

#include "util/error.h"

namespace sparse24 {

static void require_matrix(const Tensor& w, const std::string& name) {
  if (w.rank() != 2) fail("{}: expected a 2-D tensor [rows][cols], got {}", name, shape_str(w.shape()));
  if (w.dim(1) % 4 != 0)
    fail("{}: the reduction dimension K = {} is not a multiple of 4, so it has no 2:4 groups", name,
         w.dim(1));
}

Mask24 magnitude_mask(const Tensor& w, const std::string& name) {
  require_matrix(w, name);
  Mask24 m{w.dim(0), w.dim(1), {}};
  int64_t groups = w.numel() / 4;
  m.nibbles.resize(size_t(groups));
  for (int64_t g = 0; g < groups; ++g) {
    float mag[4];
    for (int i = 0; i < 4; ++i) {
      float v = w.get(g * 4 + i);
      if (!std::isfinite(v))
        fail("{}: element [{}, {}] is {}; refusing a weight with NaN or Inf", name, (g * 4 + i) / w.dim(1),
             (g * 4 + i) % w.dim(1), v);
      mag[i] = std::fabs(v);
    }
    // Strict '>' keeps the lower index on ties.
    int first = 0;
    for (int i = 1; i < 4; ++i)
      if (mag[i] > mag[first]) first = i;
    int second = first == 0 ? 1 : 0;
    for (int i = 0; i < 4; ++i)
      if (i != first && mag[i] > mag[second]) second = i;
    m.nibbles[size_t(g)] = make_nibble(std::min(first, second), std::max(first, second));
  }
  return m;
}

void apply_mask(Tensor& w, const Mask24& mask) {
  for (int64_t r = 0; r < mask.rows; ++r)
    for (int64_t c = 0; c < mask.cols; ++c)
      if (!mask.keeps(r, c)) w.set(r * mask.cols + c, 0.0f);
}

Check24 check_24(const Tensor& w) {
  require_matrix(w, "weight");
  Check24 c;
  c.groups = w.numel() / 4;
  for (int64_t g = 0; g < c.groups; ++g) {
    int zeros = 0;
    for (int i = 0; i < 4; ++i) zeros += w.get(g * 4 + i) == 0.0f;
    c.conforming += zeros >= 2;
  }
  return c;
}

Sparse24 compress_24(const Tensor& w, const std::string& name) {
  require_matrix(w, name);
  Sparse24 s;
  s.dtype = w.dtype();
  s.rows = w.dim(0);
  s.cols = w.dim(1);
  size_t esize = dtype_size(w.dtype());
  s.values.assign(size_t(s.rows * s.cols / 2) * esize, std::byte{0});
  s.meta.assign(size_t((s.rows * s.cols / 4 + 1) / 2), 0);
  int64_t groups = w.numel() / 4;
  for (int64_t g = 0; g < groups; ++g) {
    int kept[2], n = 0;
    for (int i = 0; i < 4; ++i) {
      if (w.get(g * 4 + i) == 0.0f) continue;
      if (n == 2)
        fail("{}: row {} group {} (columns {}..{}) has more than two nonzeros: not 2:4", name,
             (g * 4) / s.cols, g % (s.cols / 4), (g * 4) % s.cols, (g * 4) % s.cols + 3);
      kept[n++] = i;
    }
    // Fewer than two nonzeros: pad with the lowest unused positions so the nibble stays legal.
    for (int i = 0; n < 2; ++i)
      if (n == 0 || kept[0] != i) {
        kept[n++] = i;
        if (n == 2 && kept[0] > kept[1]) std::swap(kept[0], kept[1]);
      }
    for (int j = 0; j < 2; ++j)
      std::memcpy(s.values.data() + size_t(g * 2 + j) * esize, w.bytes() + size_t(g * 4 + kept[j]) * esize,
                  esize);
    s.meta[size_t(g / 2)] |= uint8_t(make_nibble(kept[0], kept[1]) << (4 * (g % 2)));
  }
  return s;
}

Tensor decompress_24(const Sparse24& s) {
  if (s.layout != Layout24::portable) fail("decompress_24 needs the portable layout; convert it first");
  Tensor w(s.dtype, {s.rows, s.cols});
  size_t esize = dtype_size(s.dtype);
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t g = 0; g < s.groups_per_row(); ++g) {
      uint8_t nib = s.nibble(r, g);
      int64_t gi = r * s.groups_per_row() + g;
      int idx[2] = {nib & 3, nib >> 2};
      for (int j = 0; j < 2; ++j)
        std::memcpy(w.bytes() + size_t(r * s.cols + g * 4 + idx[j]) * esize,
                    s.values.data() + size_t(gi * 2 + j) * esize, esize);
    }
  return w;
}

}  // namespace sparse24
