#pragma once
// The boundary between host code and the mma.sp kernels (sp24_gemm.cu): plain types only, so that nvcc
// compiles nothing of format/ and the kernels' translation unit stays small.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/sp24_layout.h"

namespace sparse24::cuda {

/// Operand type of the weight and the activations.
enum class Sp24Operand : int { f16, bf16, i8 };
/// Element type of the output Y.
enum class Sp24Output : int { f32, f16, bf16, i32 };
/// Epilogue activation (after the bias).
enum class Sp24Activation : int { none, relu, gelu, relu6 };
/// Which kernel computes the product.
enum class Sp24Kernel : int {
  automatic,  ///< small_m for M <= kSp24SmallMMax, large_m above
  small_m,    ///< weight streamed once per 64 activation rows; 8 warps split K (memory-bound regime)
  large_m,    ///< 128x128 output tiles, activations double-buffered in shared memory with cp.async
};

/// Largest M for which Sp24Kernel::automatic picks the small-M kernel.
inline constexpr int64_t kSp24SmallMMax = 128;

/// Everything one launch needs. Sizes are in elements unless named *_bytes.
struct Sp24LaunchParams {
  const void* values = nullptr;    ///< fragment-ordered weight values (sp24_pack.h), 16-byte aligned
  const uint32_t* meta = nullptr;  ///< NVIDIA-layout metadata as 32-bit words
  const float* bias = nullptr;     ///< [n] or null (never for i8)
  const void* x = nullptr;         ///< activations X[m][k], row stride ldx
  void* y = nullptr;               ///< output Y[m][n], row stride ldy
  int64_t m = 0, n = 0, k = 0, ldx = 0, ldy = 0;
  int64_t steps = 0;                ///< k-steps of the padded weight
  int64_t meta_words_per_step = 0;  ///< see Sp24PackedWeight::meta_words_per_step
  int64_t row_tiles = 0;            ///< 32-row tiles of the padded weight
  Sp24Output output = Sp24Output::f32;
  Sp24Activation activation = Sp24Activation::none;
};

/// Launches one kernel on `stream`; returns the launch status (cudaGetLastError). No allocation, no sync.
cudaError_t launch_sp24_gemm(Sp24Operand operand, Sp24Kernel kernel, const Sp24LaunchParams& params,
                             cudaStream_t stream);

}  // namespace sparse24::cuda
