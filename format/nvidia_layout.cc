#include "format/nvidia_layout.h"

#include "util/error.h"

namespace sparse24 {

NvidiaTile nvidia_tile(DType dtype) {
  switch (dtype) {
    case DType::f16:
    case DType::bf16:
      return {32, 32, 2};
    case DType::i8:
      return {16, 64, 4};
    default:
      fail("the NVIDIA 2:4 layout has no {} form (f16, bf16 and i8 only)", dtype_name(dtype));
  }
}

namespace {

// Where element (r, c) of the plain metadata matrix [rows][words_per_row] lands in the reordered buffer,
// counted in metadata words. The row interleave matches how an mma.sp thread group reads its rows, the 2x2
// swizzle and the column-pair interleave match how the words are loaded.
int64_t reordered_offset(int64_t r, int64_t c, int64_t rows, DType dtype) {
  const int64_t G = dtype == DType::i8 ? 16 : 32;
  const int64_t I = dtype == DType::i8 ? 2 : 4;
  int64_t rr = (r / G) * G + (r % 8) * I + (r % G) / 8;
  if (rr % 2 == 0 && c % 2 == 1) {
    ++rr;
    --c;
  } else if (rr % 2 == 1 && c % 2 == 0) {
    --rr;
    ++c;
  }
  return (c / 2) * rows * 2 + rr * 2 + c % 2;
}

void check_tile(const Sparse24& s) {
  NvidiaTile t = nvidia_tile(s.dtype);
  if (s.rows % t.row_multiple != 0 || s.cols % t.col_multiple != 0)
    fail("NVIDIA 2:4 layout for {} needs rows % {} == 0 and K % {} == 0; got {} x {} (pad the weight)",
         dtype_name(s.dtype), t.row_multiple, t.col_multiple, s.rows, s.cols);
}

}  // namespace

Sparse24 to_nvidia_layout(const Sparse24& p) {
  if (p.layout != Layout24::portable) fail("to_nvidia_layout expects the portable layout");
  check_tile(p);
  const NvidiaTile t = nvidia_tile(p.dtype);
  const int groups_per_word = t.meta_bytes * 2;
  const int64_t words_per_row = p.cols / 4 / groups_per_word;
  Sparse24 out = p;
  out.layout = Layout24::nvidia_sm80;
  out.meta.assign(size_t(p.rows * words_per_row * t.meta_bytes), 0);
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t c = 0; c < words_per_row; ++c) {
      uint32_t word = 0;
      for (int j = 0; j < groups_per_word; ++j)
        word |= uint32_t(p.nibble(r, c * groups_per_word + j)) << (4 * j);
      int64_t off = reordered_offset(r, c, p.rows, p.dtype) * t.meta_bytes;
      for (int b = 0; b < t.meta_bytes; ++b)
        out.meta[size_t(off + b)] = uint8_t(word >> (8 * b));  // little-endian
    }
  return out;
}

Sparse24 from_nvidia_layout(const Sparse24& n) {
  if (n.layout != Layout24::nvidia_sm80) fail("from_nvidia_layout expects the NVIDIA layout");
  check_tile(n);
  const NvidiaTile t = nvidia_tile(n.dtype);
  const int groups_per_word = t.meta_bytes * 2;
  const int64_t words_per_row = n.cols / 4 / groups_per_word;
  if (n.meta.size() != size_t(n.rows * words_per_row * t.meta_bytes))
    fail("NVIDIA 2:4 metadata has {} bytes, expected {}", n.meta.size(),
         n.rows * words_per_row * t.meta_bytes);
  Sparse24 out = n;
  out.layout = Layout24::portable;
  out.meta.assign(size_t(n.rows * n.cols / 8), 0);
  for (int64_t r = 0; r < n.rows; ++r)
    for (int64_t c = 0; c < words_per_row; ++c) {
      int64_t off = reordered_offset(r, c, n.rows, n.dtype) * t.meta_bytes;
      uint32_t word = 0;
      for (int b = 0; b < t.meta_bytes; ++b) word |= uint32_t(n.meta[size_t(off + b)]) << (8 * b);
      for (int j = 0; j < groups_per_word; ++j) {
        uint8_t nib = (word >> (4 * j)) & 0xf;
        if (!is_legal_nibble(nib))
          fail("NVIDIA 2:4 metadata row {} word {} holds an illegal nibble 0x{:x}", r, c, nib);
        size_t gi = size_t(r * n.groups_per_row() + c * groups_per_word + j);
        out.meta[gi / 2] |= uint8_t(nib << (4 * (gi % 2)));
      }
    }
  return out;
}

}  // namespace sparse24
