#pragma once
// The CPU kernels' own layout of a 2:4 weight W[N][K], built once from the portable Sparse24 when a layer is
// built. Rows are cut into tiles of 16 output channels: one channel per SIMD lane, so a kernel loads the kept
// values of 16 channels with one aligned load and turns the metadata into a permute control in registers.
//
// f32 / bf16 values, per tile, per group g of 4 along K:
//   values[tile][g][j][lane]  (j = 0, 1: the two kept values of the group, in order)
//   meta[tile][g]             one uint64: the nibble of lane i sits at bit 32*(i%2) + 4*(i/2), so after a
//                             64-bit broadcast, dword lane i shifted right by 4*(i/2) + 2*j holds idx_j in
//                             its two low bits, which is all vpermilps reads.
// i8 values, per tile, per pair p of groups (8 along K; K is padded to a whole pair with zero values):
//   values[tile][p][lane][4]  v(2p,0) v(2p,1) v(2p+1,0) v(2p+1,1): one dword per lane for vpdpbusd
//   meta[tile][p][lane]       nibble(2p) | nibble(2p+1) << 4
//   row_sums[n]               sum of the row's values (undoes the +128 that makes activations unsigned)
//   scales[n]                 the per-output-channel weight scale
// Lanes past N hold zero values, so kernels may compute them and must not store them.
#include <cstdint>
#include <vector>

#include "format/pattern24.h"
#include "kernels/cpu/weight_memory.h"

namespace sparse24::cpu {

/// Output channels per tile (one per f32 lane of a 512-bit register).
inline constexpr int64_t kTileRows = 16;

/// A 2:4 weight W[N][K] repacked for the CPU kernels (f32, bf16 or i8 values).
struct Packed24 {
  DType dtype = DType::f32;
  int64_t rows = 0;               ///< N, output channels
  int64_t cols = 0;               ///< K, reduction length (a multiple of 4)
  int64_t tiles = 0;              ///< ceil(N / 16)
  int64_t steps = 0;              ///< K steps per tile: groups of 4 (f32, bf16) or pairs of groups (i8)
  WeightBytes values;             ///< see the file comment (on huge pages: weight_memory.h)
  WeightBytes meta;               ///< see the file comment
  std::vector<int32_t> row_sums;  ///< i8 only: [tiles*16]
  std::vector<float> scales;      ///< i8 only: [tiles*16], 1 where not given

  /// Values of one tile, as the kernel's element type.
  template <typename T>
  const T* tile_values(int64_t tile) const {
    return reinterpret_cast<const T*>(values.data()) + tile * steps * (dtype == DType::i8 ? 64 : 32);
  }
  /// Metadata of one tile (8 bytes per group for f32/bf16, 16 bytes per pair for i8).
  const uint8_t* tile_meta(int64_t tile) const {
    return reinterpret_cast<const uint8_t*>(meta.data()) + tile * steps * (dtype == DType::i8 ? 16 : 8);
  }
  /// Bytes the kernels stream per call (values, metadata, and i8 row sums and scales).
  int64_t stream_bytes() const {
    return int64_t(values.size() + meta.size() + (row_sums.size() + scales.size()) * 4);
  }
};

/// Repacks a portable f32, bf16 or i8 Sparse24. `scales` (i8 only) gives one weight scale per row, or is
/// empty for all ones. Throws Error for another dtype or layout, or a scale count that is not N.
Packed24 pack_24(const Sparse24& w, const std::vector<float>& scales = {});

/// The portable Sparse24 back from a packed weight, bit for bit what pack_24 was given.
Sparse24 unpack_24(const Packed24& p);

}  // namespace sparse24::cpu
