#pragma once
// 2:4 sparse GEMM on x86 CPUs: Y[M][N] = act(X[M][K] · Wᵀ · scale + bias) with W a Packed24.
//   f32 weights:  f32 X, f32 accumulation.
//   bf16 weights: f32 X, values widened exactly to f32, f32 accumulation.
//   i8 weights:   i8 X, i32 accumulation, then Y = float(acc) * (x_scale * w_scale[n]) + bias[n]
//                 (reference::gemm_24_i8_scaled is the oracle).
// Threads split the output channels, never K, so every thread count gives the same bits.
#include <cstdint>
#include <functional>
#include <span>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/packed24.h"
#include "reference/gemm.h"

namespace sparse24::cpu {

using reference::Activation;

/// One call's operands. X rows are ldx elements apart (ldx >= K), Y rows ldy apart (ldy >= N).
/// A 2-D convolution's patch matrix, read in place (implicit im2col): row m of X is output pixel m's
/// window over the channels-last input, ordered [kh][kw][c] (zeros where the window leaves the image), so
/// K = KH·KW·C, and Y [M][OC] is the channels-last output. Only kernels listed with `patches` read it.
struct ConvPatches {
  const float* x = nullptr;  ///< [N][H][W][C]
  int64_t N = 0, H = 0, W = 0, C = 0, OH = 0, OW = 0, KH = 0, KW = 0;
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1, pad_top = 0, pad_left = 0;
};

struct Spmm24Args {
  int64_t M = 0;                         ///< rows of X and Y, >= 1
  const void* X = nullptr;               ///< float (f32/bf16 weights) or int8_t (i8 weights), [M][ldx]
  int64_t ldx = 0;                       ///< leading dimension of X, in elements
  float x_scale = 1.0f;                  ///< i8 only: the activations' quantization scale
  const Packed24* W = nullptr;           ///< the packed weight, N x K
  const float* bias = nullptr;           ///< [N] or null
  Activation act = Activation::none;     ///< epilogue after the bias
  float* Y = nullptr;                    ///< [M][ldy] f32 output
  int64_t ldy = 0;                       ///< leading dimension of Y, in elements
  const ConvPatches* patches = nullptr;  ///< when set, X and ldx are unused: row m is patch patch_row0 + m
  int64_t patch_row0 = 0;
  /// Panel GEMM kernels only (Spmm24Kernel::panel_rows), not with GELU: a residual [M][ldy] added after the
  /// epilogue, Y = post(act(X·Wᵀ + bias) + residual), post = ReLU when residual_relu (a ResNet block's sum).
  const float* residual = nullptr;
  bool residual_relu = false;
  /// Image blocks only (image_block_lanes): the output rows [begin, end) of every image this call computes;
  /// end 0: all of them. spmm24_run splits a call's threads over these.
  int64_t image_row_begin = 0, image_row_end = 0;
  /// Patch kernels only (kernel_pools), not with GELU: instead of writing Y, every output pixel (after bias,
  /// activation and residual) is added into pool [images][ldy] (zeroed by the caller), row j for image
  /// patch_row0 / (OH·OW) + j, so a GlobalAveragePool after the convolution costs no pass over Y. The sums'
  /// order depends on the thread count (on integer-valued data they are exact).
  float* pool = nullptr;
  /// Set by the kernels: the pool's row stride for the rows they store, 0 where all of them are one image's.
  int64_t pool_ld = 0;
  /// spmm24_run only, not with `pool`: a second phase over the threads the call woke, then(thread, threads)
  /// on each of them once all have finished the product (then(0, 1) where the call runs on one thread), so a
  /// pass over Y needs no team of its own and each thread can take the rows its core just wrote.
  std::function<void(int thread, int threads)> then = nullptr;
};

/// A kernel computes output tiles [tile_begin, tile_end) (16 channels each) for all M rows of one call.
using Spmm24Fn = void (*)(const Spmm24Args& args, int64_t tile_begin, int64_t tile_end);

/// One entry of the kernel registry (spmm24_kernels.inc).
struct Spmm24Kernel {
  const char* name;    ///< the function's name, e.g. "f32_spmm_24_gemv_avx512"
  Isa isa;             ///< the instruction set it needs
  DType weight_dtype;  ///< the Packed24 dtype it reads
  int64_t max_m;       ///< the largest M it is tuned for; 0 for any
  int64_t panel_rows;  ///< GEMM kernels that compute rows in whole panels (padding M up): the panel height
  int64_t min_panel_rows;  ///< and the shortest panel they run the last rows in
  bool patches;            ///< reads X through ConvPatches (implicit im2col) when Spmm24Args::patches is set
  int64_t image_lanes;     ///< and runs whole images this many at a time where image_block_lanes says so
  Spmm24Fn fn;             ///< the kernel
};

/// The height of the panel a panel GEMM kernel (panel_gemm, spmm24_panel.h) runs the next `left` rows of M
/// in, for panels of `tall`, tall / 2 and `tiny` rows (tiny = 0 where it has no shorter one): whole tall
/// panels, then the last rows in the half-height panel, the half and the shortest one, or the shortest alone.
/// The kernels cut M with it, and the dispatcher counts their padding with it. The last rows, up to half the
/// shortest panel, do not take a panel: panel_gemm runs them through the GEMV (its tail).
constexpr int64_t next_panel_height(int64_t left, int64_t tall, int64_t tiny) {
  return left > tall / 2 + tiny ? tall : left > tiny ? tall / 2 : tiny;
}

/// The K groups of one K block of a panel GEMM's panel of `panel_rows` rows, on a core with `l1d_bytes` of
/// L1 data cache (cpu::l1d_bytes()): as many as leave the block's Xt (16 bytes per row and group) and two
/// tiles' weight slices (the one in use and the next, which the micro-kernel prefetches: kept f32 values
/// and metadata, 136 bytes per group) within 41/48 of L1, in multiples of 16 and at least 16. On a 48 KiB
/// L1 (Zen 5, where it was measured): 32, 48, 64 and 96 groups for 64, 32, 16 and 8 rows; on 32 KiB (Zen
/// 3 and 4, many Intel cores): 16, 32, 48 and 64.
int64_t panel_block_groups(int64_t panel_rows, int64_t l1d_bytes);

/// Every registered kernel, in registry order (including those this CPU cannot run).
std::span<const Spmm24Kernel> spmm24_kernels();

/// The kernel the dispatcher uses for this weight dtype, M and thread count at an ISA level (the best one
/// at or below it): for a panel GEMM, the GEMV kernel wherever the panels would pad so many rows (per
/// thread, after the split of spmm24_run) that it is faster (see spmm24.cc); otherwise the GEMV kernel up
/// to its max_m, then the GEMM kernel. `weight_bytes` (Packed24::stream_bytes, 0 for small) tells whether a
/// panel GEMM's tail reads the weights again from the cache or from memory.
const Spmm24Kernel& choose_spmm24_kernel(DType weight_dtype, int64_t M, Isa isa, int threads = 1,
                                         int64_t weight_bytes = 0);

/// The kernel that reads convolution patches in place for this weight dtype at an ISA level, or null when
/// none does (the caller then builds im2col rows).
const Spmm24Kernel* choose_spmm24_patch_kernel(DType weight_dtype, Isa isa);

/// Image blocks: where a call's rows are whole output images of a convolution with stride 1 along the width
/// and whole groups of 4 channels, at most kImageBlockMaxChannels (C % 4 == 0, C <= 64; with more input
/// channels a layer has more output channels too, and the per-position packing has more tiles to pay for
/// it), a panel GEMM kernel with image_lanes copies each block of `lanes` images once into a padded layout
/// with the images side by side in the SIMD lanes ([row][column][channel][image]), and its micro-kernels
/// read every kernel position's X registers from there: no per-position packing and no K blocks
/// straddling positions. Returns `lanes` where that applies to this call: at least `lanes` images, and at
/// most one lane in 16 left empty by the last block (an empty lane costs what it would compute; the
/// per-position packing it saves is about a tenth of the time), and the block's copy fits
/// kImageBlockMaxBytes; or, for a thread's part that spmm24_run split off (image_row_end set), wherever the
/// geometry fits; else 0.
int64_t image_block_lanes(const Spmm24Args& args, int64_t lanes);
/// Whether the kernel can sum this call's output pixels into Spmm24Args::pool: a panel GEMM kernel reading
/// convolution patches, without GELU.
bool kernel_pools(const Spmm24Kernel& kernel, const Spmm24Args& args);
/// The largest padded copy of one image block a kernel makes (per thread), and the most input channels.
inline constexpr int64_t kImageBlockMaxBytes = int64_t(16) << 20;
inline constexpr int64_t kImageBlockMaxChannels = 64;

/// Runs one kernel on `threads` OpenMP threads (0: omp_get_max_threads()). Throws Error when the kernel
/// cannot run on this CPU, or the arguments do not fit the kernel or each other (dtype, shapes, strides).
void spmm24_run(const Spmm24Kernel& kernel, const Spmm24Args& args, int threads = 0);

/// Runs the kernel choose_spmm24_kernel picks for active_isa().
void spmm24(const Spmm24Args& args, int threads = 0);

/// GELU as reference::gelu computes it (erf form, in double), for the kernels' epilogue.
float gelu_erf(float x);

}  // namespace sparse24::cpu
