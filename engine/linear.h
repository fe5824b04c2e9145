#pragma once
// The GEMM every Gemm, MatMul and Conv with a constant weight lowers to:
//   Y[M][N] = act(X[M][K] · W[N][K]ᵀ + bias)
// It holds the weight once in the form its tactic reads (dense for BLAS, packed 2:4 for the CPU kernels),
// prepared when the plan is built and never repacked per call.
#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "engine/cuda_linear.h"
#include "engine/dense_onednn.h"
#include "format/pattern24.h"
#include "kernels/cpu/packed24.h"
#include "kernels/cpu/spmm24.h"
#include "reference/gemm.h"

namespace sparse24::engine {

using reference::Activation;

/// How a linear layer computes.
enum class Tactic : uint8_t {
  dense_blas,  ///< ops::blas_sgemm: OpenBLAS sgemv for M = 1, oneDNN sgemm otherwise, split over the threads
  sparse24_cpu,  ///< sparse24's 2:4 CPU kernels (kernels/cpu)
  dense_onednn,  ///< oneDNN matmul (weights in its blocked layout)
  // --device cuda (engine/cuda_linear.h): bf16 operands on the GPU, f32 sums, bias and activation on the host
  cuda_cublas,      ///< cuBLAS dense
  cuda_cusparselt,  ///< cuSPARSELt 2:4
  cuda_sp24,        ///< sparse24's mma.sp 2:4 kernels
  dense_direct,     ///< a short-K Conv's direct kernel (ops/conv_direct.h); as a GEMM, dense_blas
};
/// "dense-sgemm", "2:4", "dense-onednn", "cuda-cublas", "cuda-cusparselt", "cuda-2:4" or "dense-direct".
std::string_view tactic_name(Tactic t);
/// True for the tactics that run on the GPU.
inline bool is_cuda(Tactic t) {
  return t == Tactic::cuda_cublas || t == Tactic::cuda_cusparselt || t == Tactic::cuda_sp24;
}

/// A linear layer with a constant weight.
class LinearLayer {
 public:
  /// weight: f32 [N][K] (the canonical form, groups along K). bias: empty or N values.
  LinearLayer(Tensor weight, std::vector<float> bias, Activation act);

  int64_t N() const { return weight_.dim(0); }
  int64_t K() const { return weight_.dim(1); }
  /// True when the weight follows 2:4 exactly, so the 2:4 tactic applies.
  bool is_24() const { return is_24_; }
  Tactic tactic() const { return tactic_; }
  Activation activation() const { return act_; }
  const std::vector<float>& bias() const { return bias_; }
  const Tensor& weight() const { return weight_; }

  /// Adds to the bias (fusing a following Add); makes one if there was none.
  void add_bias(const std::vector<float>& b);
  /// Sets the epilogue activation (fusing a following Relu/Gelu); only from none.
  void set_activation(Activation act);
  /// Chooses the tactic and prepares its weight form (a GPU tactic uploads it). Throws Error for 2:4 on a
  /// weight that is not 2:4, or for a GPU tactic that cannot run here.
  void set_tactic(Tactic t);
  /// The 2:4 kernel to run at exactly M rows (the planner's timed choice, any registry kernel for f32
  /// weights at or below the active ISA); at any other M, and with null, the dispatcher chooses
  /// (choose_spmm24_kernel). Convolutions that read their patches in place keep their patch kernel. Throws
  /// Error for a kernel of another weight dtype or above the active ISA.
  void set_sparse_kernel(const cpu::Spmm24Kernel* kernel, int64_t M);
  const cpu::Spmm24Kernel* sparse_kernel() const { return sparse_kernel_; }
  int64_t sparse_kernel_m() const { return sparse_kernel_m_; }
  /// The kernel the dispatcher gives this layer's 2:4 weight at M rows with the current threads (null
  /// unless the tactic is 2:4).
  const cpu::Spmm24Kernel* dispatched_kernel(int64_t M) const;

  /// Y = act(X · Wᵀ + bias) for M rows with the current tactic.
  void run(int64_t M, const float* X, int64_t ldx, float* Y, int64_t ldy) const;
  /// The same with X the patch matrix of a convolution read in place (kernels/cpu ConvPatches), and
  /// optionally a residual [M][ldy] added after the epilogue (then ReLU when residual_relu; not after GELU).
  /// Returns false, doing nothing, unless the tactic is 2:4 and a kernel of the active ISA reads patches.
  /// `then` (not after GELU) runs on the kernel's threads once Y is complete (cpu::Spmm24Args::then).
  bool run_patches(const cpu::ConvPatches& patches, int64_t M, float* Y, int64_t ldy,
                   const float* residual = nullptr, bool residual_relu = false,
                   std::function<void(int thread, int threads)> then = nullptr) const;
  /// The same summed per image into pool [images][ldpool] (zeroed by the caller; cpu::Spmm24Args::pool)
  /// instead of written out. Returns false, doing nothing, unless run_patches would run it, and without GELU.
  bool pool_patches(const cpu::ConvPatches& patches, int64_t M, float* pool, int64_t ldpool,
                    const float* residual = nullptr, bool residual_relu = false) const;

 private:
  void epilogue(int64_t M, float* Y, int64_t ldy) const;
  // The kernel that reads convolution patches for this layer: null unless the tactic is 2:4 and the active
  // ISA has one.
  const cpu::Spmm24Kernel* patch_kernel() const;
  // The 2:4 kernels: `kernel` when given (it reads `patches`), else the one the dispatcher picks for M.
  void run_sparse(int64_t M, const float* X, int64_t ldx, const cpu::ConvPatches* patches,
                  const cpu::Spmm24Kernel* kernel, float* Y, int64_t ldy, const float* residual = nullptr,
                  bool residual_relu = false, float* pool = nullptr,
                  std::function<void(int thread, int threads)> then = nullptr) const;
  Tensor weight_;
  std::vector<float> bias_;
  Activation act_;
  bool is_24_ = false;
  Tactic tactic_ = Tactic::dense_blas;
  const cpu::Spmm24Kernel* sparse_kernel_ = nullptr;
  int64_t sparse_kernel_m_ = 0;
  std::optional<cpu::Packed24> packed_;
  std::shared_ptr<OnednnMatmul> onednn_;
  std::array<std::shared_ptr<CudaLinear>, 3> cuda_;  // per GPU tactic (cuBLAS, cuSPARSELt, mma.sp), made once
};

/// True for the dense tactics.
inline bool is_dense(Tactic t) {
  return t == Tactic::dense_blas || t == Tactic::dense_onednn || t == Tactic::cuda_cublas ||
         t == Tactic::dense_direct;
}

}  // namespace sparse24::engine
