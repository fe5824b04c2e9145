#include "kernels/cuda/dense_cublas.h"

#include <cublas_v2.h>

#include "kernels/cuda/cuda_check.h"
#include "util/error.h"

namespace sparse24::cuda {

namespace {

void check_cublas(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) fail("{}: {}", call, cublasGetStatusString(status));
}
#define S24_CUBLAS_CHECK(call) check_cublas((call), #call)

}  // namespace

CublasDenseGemm::CublasDenseGemm() {
  S24_CUBLAS_CHECK(cublasCreate(&handle_));
}

CublasDenseGemm::~CublasDenseGemm() {
  if (handle_) cublasDestroy(handle_);
}

std::string CublasDenseGemm::can_implement(DType operand, DType output) {
  if (operand == DType::i8) return output == DType::i32 ? "" : "cuBLAS i8 GEMM here produces i32";
  if (operand == DType::f16 || operand == DType::bf16)
    return output == operand || output == DType::f32 ? "" : "f16/bf16 GEMM produces the operand type or f32";
  return "the dense baseline takes f16, bf16 or i8 operands, not " + std::string(dtype_name(operand));
}

void CublasDenseGemm::run(int64_t m, int64_t n, int64_t k, DType operand, DType output, const void* x,
                          const void* w, void* y, cudaStream_t stream) const {
  if (std::string why = can_implement(operand, output); !why.empty()) fail("cuBLAS baseline: {}", why);
  if (m <= 0) return;
  S24_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  // Row-major Y[m][n] is column-major Yᵀ[n][m] = W · Xᵀ: W[n][k] row-major is column-major k x n (op T),
  // X[m][k] row-major is column-major k x m (op N) — cuBLAS's "TN" case, the one its i8 path wants.
  if (operand == DType::i8) {
    const int32_t alpha = 1, beta = 0;
    S24_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w,
                                  CUDA_R_8I, int(k), x, CUDA_R_8I, int(k), &beta, y, CUDA_R_32I, int(n),
                                  CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT));
  } else {
    const float alpha = 1.0f, beta = 0.0f;
    S24_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w,
                                  cuda_data_type(operand), int(k), x, cuda_data_type(operand), int(k), &beta,
                                  y, cuda_data_type(output), int(n), CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace sparse24::cuda
