#pragma once
// The GPU tactics of a linear layer (`--device cuda`): cuBLAS dense, cuSPARSELt 2:4 and sparse24's own
// mma.sp 2:4 kernel (kernels/cuda), all on bf16 operands with f32 accumulation. The weight is converted and
// uploaded once, when the tactic is set. Per call, X goes to the device as bf16 and the f32 product comes
// back; the layer's bias and activation then run on the host with the CPU tactics' epilogue. The rest of
// the graph stays on the CPU: this is per-layer offload, not a GPU-resident graph (docs/gpu.md).
#include <cstdint>
#include <memory>
#include <string>

#include "format/tensor.h"

namespace sparse24::engine {

/// Which GPU GEMM a CudaLinear runs.
enum class CudaGemmKind : uint8_t { cublas, cusparselt, sp24 };

/// Empty when this build and machine can run the CUDA tactics (built with nvcc, a device present);
/// otherwise the reason they cannot.
std::string cuda_unavailable_reason();

/// One layer's weight on the GPU and the GEMM that multiplies it.
class CudaLinear {
 public:
  /// weight: f32 [N][K] (2:4 for cusparselt and sp24). Throws Error when the kind cannot run here or on
  /// this weight (no device, cuSPARSELt not found, not 2:4, a shape the kernel refuses).
  CudaLinear(CudaGemmKind kind, const Tensor& weight);
  ~CudaLinear();
  CudaLinear(const CudaLinear&) = delete;
  CudaLinear& operator=(const CudaLinear&) = delete;

  /// Y[M][N] = X[M][K] · Wᵀ (host pointers, row strides ldx and ldy), operands rounded to bf16, f32 sums.
  void run(int64_t M, const float* X, int64_t ldx, float* Y, int64_t ldy) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparse24::engine
