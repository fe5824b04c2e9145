#include "engine/cuda_linear.h"

#include "util/error.h"

#ifdef SPARSE24_WITH_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "format/pattern24.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cusparselt_gemm.h"
#include "kernels/cuda/dense_cublas.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/sp24_gemm.h"
#endif

namespace sparse24::engine {

#ifndef SPARSE24_WITH_CUDA

std::string cuda_unavailable_reason() {
  return "this sparse24 was built without CUDA (nvcc was not found at configure time)";
}

struct CudaLinear::Impl {};

CudaLinear::CudaLinear(CudaGemmKind, const Tensor&) {
  fail("--device cuda: {}", cuda_unavailable_reason());
}
CudaLinear::~CudaLinear() = default;
void CudaLinear::run(int64_t, const float*, int64_t, float*, int64_t) const {}

#else

std::string cuda_unavailable_reason() {
  std::string why;
  return cuda::cuda_device_available(&why) ? std::string() : why;
}

struct CudaLinear::Impl {
  CudaGemmKind kind;
  int64_t N = 0, K = 0;
  cudaStream_t stream = nullptr;
  // One of the three GEMMs, with the weight in the form it reads.
  std::unique_ptr<cuda::CublasDenseGemm> cublas;
  cuda::DeviceBuffer dense_weight;  // cuBLAS: bf16 [N][K]
  std::unique_ptr<cuda::CusparseltGemm> cusparselt;
  std::unique_ptr<cuda::Sp24Gemm> sp24;
  // Staging, grown as M grows; run() is serialised by the mutex.
  mutable std::mutex mutex;
  mutable std::vector<uint16_t> x_host, y_host_bf16;
  mutable cuda::DeviceBuffer x_dev, y_dev;

  // Rows the device buffers hold for M rows (cuSPARSELt wants M rounded up to its row multiple).
  int64_t padded_rows(int64_t M) const {
    const int64_t r = kind == CudaGemmKind::cusparselt ? cuda::CusparseltGemm::row_multiple(DType::bf16) : 1;
    return (M + r - 1) / r * r;
  }
};

CudaLinear::CudaLinear(CudaGemmKind kind, const Tensor& weight) : impl_(new Impl) {
  if (std::string why = cuda_unavailable_reason(); !why.empty()) fail("--device cuda: {}", why);
  Impl& s = *impl_;
  s.kind = kind;
  s.N = weight.dim(0);
  s.K = weight.dim(1);
  S24_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  const Tensor w16 = weight.to(DType::bf16);
  switch (kind) {
    case CudaGemmKind::cublas:
      if (std::string why = cuda::CublasDenseGemm::can_implement(DType::bf16, DType::f32); !why.empty())
        fail("cuBLAS: {}", why);
      s.cublas = std::make_unique<cuda::CublasDenseGemm>();
      s.dense_weight = cuda::DeviceBuffer(w16.nbytes());
      s.dense_weight.upload(w16.bytes(), w16.nbytes(), s.stream);
      break;
    case CudaGemmKind::cusparselt:
      if (std::string why = cuda::CusparseltGemm::availability(); !why.empty()) fail("cuSPARSELt: {}", why);
      s.cusparselt = std::make_unique<cuda::CusparseltGemm>();
      s.cusparselt->initialize(w16, DType::bf16, s.stream);
      break;
    case CudaGemmKind::sp24: {
      const Sparse24 packed = compress_24(w16);
      cuda::Sp24GemmConfig config;  // f32 output; bias and activation stay with the host epilogue
      if (std::string why = cuda::Sp24Gemm::can_implement(packed, config); !why.empty())
        fail("sparse24 mma.sp: {}", why);
      s.sp24 = std::make_unique<cuda::Sp24Gemm>();
      s.sp24->initialize(packed, config, nullptr, s.stream);
      break;
    }
  }
  S24_CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

CudaLinear::~CudaLinear() {
  if (impl_ && impl_->stream) cudaStreamDestroy(impl_->stream);
}

void CudaLinear::run(int64_t M, const float* X, int64_t ldx, float* Y, int64_t ldy) const {
  Impl& s = *impl_;
  std::lock_guard lock(s.mutex);
  if (M <= 0) return;
  const int64_t rows = s.padded_rows(M);
  // X to bf16, rows contiguous (the padding rows, if any, are zero).
  s.x_host.assign(size_t(rows * s.K), 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < s.K; ++k) s.x_host[size_t(m * s.K + k)] = f32_to_bf16(X[m * ldx + k]);
  const bool bf16_out = s.kind == CudaGemmKind::cusparselt;  // cuSPARSELt writes the operand type
  const size_t x_bytes = s.x_host.size() * 2, y_bytes = size_t(rows * s.N) * (bf16_out ? 2 : 4);
  if (s.x_dev.size() < x_bytes) s.x_dev = cuda::DeviceBuffer(x_bytes);
  if (s.y_dev.size() < y_bytes) s.y_dev = cuda::DeviceBuffer(y_bytes);
  s.x_dev.upload(s.x_host.data(), x_bytes, s.stream);
  switch (s.kind) {
    case CudaGemmKind::cublas:
      s.cublas->run(M, s.N, s.K, DType::bf16, DType::f32, s.x_dev.get(), s.dense_weight.get(), s.y_dev.get(),
                    s.stream);
      break;
    case CudaGemmKind::cusparselt:
      s.cusparselt->run(rows, s.x_dev.get(), s.y_dev.get(), s.stream);
      break;
    case CudaGemmKind::sp24: {
      cuda::Sp24GemmArguments a;
      a.m = M;
      a.x = s.x_dev.get();
      a.ldx = s.K;
      a.y = s.y_dev.get();
      a.ldy = s.N;
      s.sp24->run(a, s.stream);
      break;
    }
  }
  if (bf16_out) {
    s.y_host_bf16.resize(size_t(M * s.N));
    S24_CUDA_CHECK(cudaMemcpyAsync(s.y_host_bf16.data(), s.y_dev.get(), size_t(M * s.N) * 2,
                                   cudaMemcpyDeviceToHost, s.stream));
    S24_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < s.N; ++n) Y[m * ldy + n] = bf16_to_f32(s.y_host_bf16[size_t(m * s.N + n)]);
    return;
  }
  S24_CUDA_CHECK(cudaMemcpy2DAsync(Y, size_t(ldy) * 4, s.y_dev.get(), size_t(s.N) * 4, size_t(s.N) * 4,
                                   size_t(M), cudaMemcpyDeviceToHost, s.stream));
  S24_CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

#endif

}  // namespace sparse24::engine
