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

/// Which compressed weight bytes register `reg` (0..3) of `lane` holds within one 16-row half and one
/// k-step: the row inside the half and the byte inside the row's 32 compressed bytes of that k-step. This
/// is the A-fragment layout of mma.sp m16n8k32 (16-bit) and m16n8k64 (8-bit), which coincide in bytes:
/// registers 0/2 hold row groupID, 1/3 row groupID+8; registers 0/1 bytes 4·tid..+3, registers 2/3 bytes
/// 16+4·tid..+3 (groupID = lane/4, tid = lane%4).
struct Sp24FragmentSource {
  int row;   ///< 0..15 inside the half
  int byte;  ///< 0..31 inside the row's compressed bytes of this k-step (4 consecutive bytes)
};
S24_HOST_DEVICE constexpr Sp24FragmentSource sp24_fragment_source(int lane, int reg) {
  return {lane / 4 + 8 * (reg & 1), 16 * (reg >> 1) + 4 * (lane % 4)};
}

/// Where mma.sp reads the metadata nibble of row `r` (0..15 of a 16-row half) and group `q` (0..7 for 16-bit
/// operands, 0..15 for i8) of one k-step: the lane whose metadata register holds it and the bit offset.
/// 16-bit: lanes t = 0,1 (selector 0) or t = 2,3 (selector 1) of quad r%8, rows r and r+8 in the low and high
/// 16 bits, t%2 picking K 0-15 or 16-31; i8 (selector 0): all four lanes of quad r%8, t = r/8 + 2·(q/8), 8
/// groups a word.
struct Sp24MetaSlot {
  int lane;
  int bit;
};
S24_HOST_DEVICE constexpr Sp24MetaSlot sp24_meta_slot(bool int8, int selector, int r, int q) {
  if (int8) return {4 * (r % 8) + r / 8 + 2 * (q / 8), 4 * (q % 8)};
  return {4 * (r % 8) + q / 4 + 2 * selector, 16 * (r / 8) + 4 * (q % 4)};
}

}  // namespace sparse24::cuda
