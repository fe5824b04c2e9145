#pragma once
// The cuSPARSELt 2:4 backend: NVIDIA's library, loaded at run time (cusparselt_api.h). The weight is
// compressed once by cuSPARSELt's own compress; the matmul plan, with its algorithm search and workspace,
// is built once per activation row count M and cached, so a repeated call only enqueues the matmul.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "format/tensor.h"
#include "kernels/cuda/cusparselt_api.h"
#include "kernels/cuda/device_buffer.h"

namespace sparse24::cuda {

/// Y[m][n] = X[m][k] · W[n][k]ᵀ with W 2:4, through cuSPARSELt.
class CusparseltGemm {
 public:
  /// Empty when cuSPARSELt can be loaded here; otherwise why not (the library's search path and error).
  static std::string availability();
  /// Empty when this operand/output pair is supported (f16->f16, bf16->bf16, i8->i32); otherwise why not.
  static std::string can_implement(DType operand, DType output);

  /// Row multiple cuSPARSELt wants of the dense operand (16 for f16/bf16, 32 for i8 — what PyTorch pads its
  /// activations to): run() with M rounded up to it, on buffers that hold the padded rows.
  static int64_t row_multiple(DType operand) { return operand == DType::i8 ? 32 : 16; }

  /// Loads the library and creates a handle. Throws Error when cuSPARSELt is unavailable or fails to start.
  CusparseltGemm();
  ~CusparseltGemm();
  CusparseltGemm(const CusparseltGemm&) = delete;
  CusparseltGemm& operator=(const CusparseltGemm&) = delete;

  /// Uploads a dense 2:4 weight W[n][k] (host tensor of the operand dtype), checks on the device that it is
  /// 2:4, and compresses it with cuSPARSELt. Waits for the stream. Throws Error on any failure.
  void initialize(const Tensor& weight, DType output, cudaStream_t stream);
  /// Builds and caches the plan for m rows: descriptors, algorithm search (it runs the matmul on x and y),
  /// workspace. run() calls it on the first call for an m; call it ahead to keep set-up out of timing.
  void prepare(int64_t m, const void* x, void* y, cudaStream_t stream);
  /// Enqueues the matmul for m rows on `stream` (x: device X[m][k], y: device Y[m][n], contiguous rows).
  void run(int64_t m, const void* x, void* y, cudaStream_t stream);

  /// major·1000 + minor·100 + patch of the loaded library.
  int version() const { return api_->version; }

 private:
  struct Plan;
  const cslt::Api* api_ = nullptr;
  cslt::Handle handle_{};
  DType operand_ = DType::f16, output_ = DType::f16;
  int64_t n_ = 0, k_ = 0;
  DeviceBuffer compressed_;
  std::map<int64_t, std::unique_ptr<Plan>> plans_;
};

}  // namespace sparse24::cuda
