#pragma once
// Host-side packing of a 2:4 weight for the sparse24 mma.sp kernels (sp24_gemm.h). Plain C++, no CUDA: the
// packing is tested on any machine.
//
// The kernels compute Yᵀ = W · Xᵀ with the weight W[N][K] as the sparse A operand of
// mma.sp.m16n8k32 (f16, bf16) or mma.sp.m16n8k64 (i8). One "k-step" is the K one instruction consumes:
// 32 elements (16-bit) or 64 elements (8-bit) — 64 bytes of an activation row, and 32 bytes of a compressed
// weight row, for every dtype. The weight is padded with zeros to whole 32-row tiles and whole k-steps, then:
//  - values are stored in *fragment order*: for every 32-row tile, k-step, 16-row half and lane, the 16 bytes
//    that lane holds as its four A registers, so a warp loads its A operand with one coalesced 128-bit load
//    per lane (512 contiguous bytes per 16-row half);
//  - metadata stays in NVIDIA's reordered layout (format/nvidia_layout.h), in which a warp's metadata
//    register for one k-step is already one coalesced 32-bit load per lane.
#include <cstdint>
#include <vector>

#include "format/pattern24.h"
#include "kernels/cuda/sp24_layout.h"

namespace sparse24::cuda {

/// K elements per k-step for a weight dtype (32 for f16/bf16, 64 for i8); throws Error for other dtypes.
int64_t sp24_step_elements(DType dtype);

/// A 2:4 weight packed for the mma.sp kernels: padded, values in fragment order, metadata in NVIDIA's layout.
struct Sp24PackedWeight {
  DType dtype = DType::f16;
  int64_t n = 0, k = 0;                ///< the weight's logical shape W[n][k]
  int64_t n_padded = 0, k_padded = 0;  ///< padded to kSp24RowTile rows and whole k-steps
  std::vector<uint8_t> values;         ///< n_padded * k_padded / 2 elements, fragment order
  std::vector<uint8_t> meta;           ///< n_padded * k_padded / 8 bytes, Layout24::nvidia_sm80

  int64_t steps() const { return k_padded / sp24_step_elements(dtype); }
  /// 32-bit metadata words the kernel reads per k-step (all rows): n_padded for 16-bit, 2·n_padded for i8.
  int64_t meta_words_per_step() const { return dtype == DType::i8 ? 2 * n_padded : n_padded; }
};

/// Pads a portable-layout f16/bf16/i8 weight with zero rows and zero K groups, converts its metadata to
/// NVIDIA's layout and reorders its values into fragment order. Throws Error for other dtypes or layouts.
Sp24PackedWeight pack_sp24_weight(const Sparse24& portable);

/// The exact inverse of pack_sp24_weight: the portable weight (padding dropped).
Sparse24 unpack_sp24_weight(const Sp24PackedWeight& packed);

}  // namespace sparse24::cuda
