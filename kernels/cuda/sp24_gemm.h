#pragma once
// The sparse24 2:4 GEMM on NVIDIA sparse tensor cores, as a device-level operator in the CUTLASS manner:
//   can_implement -> get_workspace_size -> initialize (pack + upload once) -> run (a launch, nothing else).
// Computes Y[M][N] = act(X[M][K] · Wᵀ + bias) for a 2:4 weight W[N][K] (f16, bf16 or i8) with f32 (or i32)
// accumulation. Kernels: sp24_gemm.cu; layouts: sp24_pack.h; docs/gpu.md.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "format/pattern24.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/sp24_launch.h"
#include "reference/gemm.h"

namespace sparse24::cuda {

/// What the operator computes besides the product.
struct Sp24GemmConfig {
  DType output = DType::f32;  ///< f32 or the weight's dtype (f16/bf16); i32 for i8
  reference::Activation activation = reference::Activation::none;  ///< f16/bf16 only
  bool has_bias = false;                                           ///< f32 bias[N], f16/bf16 only
};

/// One call's operands; device pointers. X[m][k] (row stride ldx elements), Y[m][n] (row stride ldy).
struct Sp24GemmArguments {
  int64_t m = 0;
  const void* x = nullptr;
  int64_t ldx = 0;
  void* y = nullptr;
  int64_t ldy = 0;
  Sp24Kernel kernel = Sp24Kernel::automatic;  ///< tests force each kernel; leave automatic otherwise
};

/// 2:4 GEMM on mma.sp with the weight uploaded once.
class Sp24Gemm {
 public:
  /// Empty when the weight (portable layout) and config can run; otherwise the reason they cannot.
  static std::string can_implement(const Sparse24& weight, const Sp24GemmConfig& config);
  /// Device workspace run() needs beyond the operator's own buffers: none (kept for the CUTLASS shape).
  static size_t get_workspace_size(const Sparse24& weight, const Sp24GemmConfig& config) { return 0; }

  /// Packs the weight (sp24_pack.h) and uploads it and the bias (host f32[N], or null) on `stream`, then
  /// waits for the copies. Throws Error when can_implement refuses or a CUDA call fails.
  void initialize(const Sparse24& weight, const Sp24GemmConfig& config, const float* bias,
                  cudaStream_t stream);

  /// Launches the product on `stream`: no allocation, no synchronisation. Throws Error on bad arguments
  /// (alignment, strides) or a failed launch.
  void run(const Sp24GemmArguments& args, cudaStream_t stream) const;

  /// The kernel run() uses for `m` activation rows with Sp24Kernel::automatic.
  static Sp24Kernel kernel_for(int64_t m) {
    return m <= kSp24SmallMMax ? Sp24Kernel::small_m : Sp24Kernel::large_m;
  }

  int64_t n() const { return params_.n; }
  int64_t k() const { return params_.k; }
  /// Device bytes of the packed weight (values + metadata).
  size_t weight_bytes() const { return values_.size() + meta_.size(); }

 private:
  Sp24Operand operand_ = Sp24Operand::f16;
  Sp24LaunchParams params_;  // the per-weight part; run() fills in m, x, y and the strides
  DeviceBuffer values_, meta_, bias_;
};

}  // namespace sparse24::cuda
