#pragma once
// The dense baseline: cuBLAS GEMM (cublasGemmEx) with f32 accumulation for f16/bf16 and i32 for i8.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "format/dtype.h"

struct cublasContext;

namespace sparse24::cuda {

/// Y[m][n] = X[m][k] · W[n][k]ᵀ, all row-major, on cuBLAS.
class CublasDenseGemm {
 public:
  /// Creates the cuBLAS handle. Throws Error when cuBLAS cannot start (no device).
  CublasDenseGemm();
  ~CublasDenseGemm();
  CublasDenseGemm(const CublasDenseGemm&) = delete;
  CublasDenseGemm& operator=(const CublasDenseGemm&) = delete;

  /// Empty when cuBLAS runs this operand/output pair (f16->f16|f32, bf16->bf16|f32, i8->i32); else why not.
  static std::string can_implement(DType operand, DType output);
  /// Launches on `stream` (device pointers, contiguous rows). Throws Error naming the failed cuBLAS call.
  void run(int64_t m, int64_t n, int64_t k, DType operand, DType output, const void* x, const void* w,
           void* y, cudaStream_t stream) const;

 private:
  cublasContext* handle_ = nullptr;
};

}  // namespace sparse24::cuda
