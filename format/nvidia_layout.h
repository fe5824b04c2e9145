#pragma once
// The metadata arrangement NVIDIA sparse tensor cores read (mma.sp m16n8k32 on sm80+, CUTLASS's sm80 sparse
// GEMM, cuSPARSELt). Values stay [rows][cols/2] row-major; only the metadata moves. docs/format.md walks
// through it; tests/data/nvidia_24_layouts.npz (made by NVIDIA's code on an H200) holds it to the real thing.
#include "format/pattern24.h"

namespace sparse24 {

/// Tile a weight must fill for the NVIDIA layout: rows % row_multiple == 0 and cols % col_multiple == 0.
struct NvidiaTile {
  int row_multiple;  ///< 32 for 16-bit operands, 16 for 8-bit
  int col_multiple;  ///< 32 for 16-bit operands, 64 for 8-bit (two metadata words per row pair)
  int meta_bytes;    ///< 2 (int16 word: 4 groups) or 4 (int32 word: 8 groups)
};
/// The tile for a value dtype (f16, bf16 or i8); throws Error for others.
NvidiaTile nvidia_tile(DType dtype);

/// Portable -> NVIDIA layout. Throws Error when rows/cols do not fill the tile (pad the weight first).
Sparse24 to_nvidia_layout(const Sparse24& portable);
/// NVIDIA -> portable layout (the exact inverse).
Sparse24 from_nvidia_layout(const Sparse24& nvidia);

}  // namespace sparse24
