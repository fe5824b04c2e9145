#pragma once
// The 2:4 pattern on a weight seen as W[rows][cols], groups of 4 consecutive elements along cols (the
// reduction dimension K): the magnitude mask, the conformance check, and the portable compressed form.
#include <cstdint>
#include <vector>

#include "format/tensor.h"

namespace sparse24 {

/// The kept positions of one group of 4 as a metadata nibble: idx0 | idx1 << 2 with idx0 < idx1.
/// Only six values are legal: 0x4 0x8 0x9 0xC 0xD 0xE.
constexpr uint8_t make_nibble(int idx0, int idx1) {
  return uint8_t(idx0 | (idx1 << 2));
}
/// True for the six legal nibbles.
constexpr bool is_legal_nibble(uint8_t n) {
  int a = n & 3, b = (n >> 2) & 3;
  return n < 16 && a < b;
}

/// Which two elements of every group are kept: one nibble per group, row-major [rows][cols/4].
struct Mask24 {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> nibbles;
  uint8_t nibble(int64_t r, int64_t g) const { return nibbles[size_t(r * (cols / 4) + g)]; }
  /// True where element (r, c) is kept.
  bool keeps(int64_t r, int64_t c) const {
    uint8_t n = nibble(r, c / 4);
    int i = int(c % 4);
    return (n & 3) == i || (n >> 2) == i;
  }
};

/// The magnitude mask of a 2-D tensor [rows][cols] (cols % 4 == 0): in every group, the two largest |w|,
/// ties going to the lower index. Throws Error on NaN or Inf (`name` names the tensor in the message).
Mask24 magnitude_mask(const Tensor& w, const std::string& name = "weight");

/// Sets every element the mask does not keep to zero.
void apply_mask(Tensor& w, const Mask24& mask);

/// How well a tensor already follows 2:4.
struct Check24 {
  int64_t groups = 0;      ///< groups of 4 along cols
  int64_t conforming = 0;  ///< groups with at least two zeros
  double fraction() const { return groups ? double(conforming) / double(groups) : 1.0; }
};
/// Counts conforming groups of a 2-D tensor [rows][cols] (cols % 4 == 0).
Check24 check_24(const Tensor& w);

/// Metadata arrangements of a compressed weight. Every layout converts to and from `portable` exactly.
enum class Layout24 : uint8_t {
  portable,     ///< meta: one nibble per group, row-major, two groups per byte (low nibble first)
  nvidia_sm80,  ///< meta reordered as mma.sp / CUTLASS sm80+ / cuSPARSELt read it (see nvidia_layout.h)
};

/// A 2:4-compressed weight W[rows][cols]: the two kept values of every group, in order, [rows][cols/2],
/// plus metadata whose arrangement `layout` names. A group with more than two zeros still stores two
/// entries (a zero value is legal).
struct Sparse24 {
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  Layout24 layout = Layout24::portable;
  AlignedBytes values;        ///< rows * cols/2 elements of dtype
  std::vector<uint8_t> meta;  ///< portable: rows * cols/8 bytes

  int64_t groups_per_row() const { return cols / 4; }
  /// Portable metadata nibble of group g in row r.
  uint8_t nibble(int64_t r, int64_t g) const {
    size_t i = size_t(r * groups_per_row() + g);
    return (meta[i / 2] >> (4 * (i % 2))) & 0xf;
  }
  template <typename T>
  const T* value_data() const {
    return reinterpret_cast<const T*>(values.data());
  }
};

/// Compresses a 2-D 2:4 tensor [rows][cols] into the portable layout. Throws Error naming the first
/// group that holds more than two nonzeros, or when cols % 4 != 0.
Sparse24 compress_24(const Tensor& w, const std::string& name = "weight");

/// The dense tensor [rows][cols] back from a portable Sparse24 (exact).
Tensor decompress_24(const Sparse24& s);

}  // namespace sparse24
