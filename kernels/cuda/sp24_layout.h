#pragma once
// Where the mma.sp kernels find their operands in the packed weight: constants and index functions shared by
// the host packer (sp24_pack.h), its CPU test and the kernels (sp24_gemm.cu). No CUDA headers.
#include <cstdint>

#if defined(__CUDACC__)
#define S24_HOST_DEVICE __host__ __device__
#else
#define S24_HOST_DEVICE
#endif

namespace sparse24::cuda {

/// Rows of one warp tile of the weight (two m16 halves); N is padded to a multiple of this.
inline constexpr int64_t kSp24RowTile = 32;
/// Bytes of one activation row one mma.sp consumes (32 f16/bf16 or 64 i8 elements).
inline constexpr int64_t kSp24StepBytes = 64;
/// Bytes of A operand one lane holds for one 16-row half and one k-step (four 32-bit registers).
inline constexpr int64_t kSp24LaneBytes = 16;

/// Byte offset, in the fragment-ordered values, of the 16 bytes `lane` loads for 32-row tile `row_tile`,
/// k-step `step` (of `steps`) and 16-row half `half`. Shared by the packer, its test and the kernels.
S24_HOST_DEVICE constexpr int64_t sp24_fragment_offset(int64_t row_tile, int64_t step, int64_t steps,
                                                       int half, int lane) {
  return (((row_tile * steps + step) * 2 + half) * 32 + lane) * kSp24LaneBytes;
}

/// Index of the 32-bit metadata word `lane` (= 4·g + t) loads for 32-row tile `row_tile`, k-step `step` and
/// 16-row half `half`, in NVIDIA's layout (docs/format.md), where the words of all rows for one k-step are
/// contiguous. 16-bit operands: 32 words per tile, one word serving both halves — t = 0 holds rows g (low 16
/// bits) and g+8 (high 16 bits) for K 0-15, t = 1 the same rows for K 16-31, t = 2, 3 the same for rows 16+g
/// and 24+g. i8: 32 words per half — t = 0 row g, t = 1 row g+8 for K 0-31; t = 2, 3 the same for K 32-63.
S24_HOST_DEVICE constexpr int64_t sp24_meta_word_index(int64_t row_tile, int64_t step, int64_t words_per_step,
                                                       int half, int lane, bool int8) {
  return step * words_per_step + (int8 ? row_tile * 64 + half * 32 : row_tile * 32) + lane;
}

}  // namespace sparse24::cuda
