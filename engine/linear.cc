#include "engine/linear.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "engine/ops/conv_gemm.h"
#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "kernels/cpu/spmm24.h"
#include "util/error.h"

namespace sparse24::engine {

std::string_view tactic_name(Tactic t) {
  switch (t) {
    case Tactic::dense_blas:
      return "dense-sgemm";
    case Tactic::sparse24_cpu:
      return "2:4";
    case Tactic::dense_onednn:
      return "dense-onednn";
    case Tactic::cuda_cublas:
      return "cuda-cublas";
    case Tactic::cuda_cusparselt:
      return "cuda-cusparselt";
    case Tactic::cuda_sp24:
      return "cuda-2:4";
    case Tactic::dense_direct:
      return "dense-direct";
  }
  return "?";
}

namespace {
// cuda_ index of a GPU tactic, which is also its CudaGemmKind.
size_t cuda_slot(Tactic t) {
  static_assert(uint8_t(CudaGemmKind::cublas) == 0 && uint8_t(CudaGemmKind::cusparselt) == 1 &&
                uint8_t(CudaGemmKind::sp24) == 2);
  return size_t(uint8_t(t) - uint8_t(Tactic::cuda_cublas));
}
}  // namespace

LinearLayer::LinearLayer(Tensor weight, std::vector<float> bias, Activation act)
    : weight_(std::move(weight)), bias_(std::move(bias)), act_(act) {
  if (weight_.dtype() != DType::f32 || weight_.rank() != 2) fail("a linear layer needs an f32 [N][K] weight");
  if (!bias_.empty() && int64_t(bias_.size()) != N())
    fail("bias has {} values, the layer has {} outputs", bias_.size(), N());
  is_24_ = K() % 4 == 0 && check_24(weight_).fraction() == 1.0;
}

void LinearLayer::add_bias(const std::vector<float>& b) {
  if (int64_t(b.size()) != N()) fail("bias has {} values, the layer has {} outputs", b.size(), N());
  if (bias_.empty()) bias_.assign(size_t(N()), 0.0f);
  for (size_t i = 0; i < b.size(); ++i) bias_[i] += b[i];
}

void LinearLayer::set_activation(Activation act) {
  if (act_ != Activation::none) fail("linear layer already has an activation");
  act_ = act;
}

void LinearLayer::set_tactic(Tactic t) {
  if (t == Tactic::sparse24_cpu) {
    if (!is_24_) fail("the 2:4 tactic needs a 2:4 weight");
    if (!packed_) packed_ = cpu::pack_24(compress_24(weight_));
  }
  if (t == Tactic::dense_onednn && !onednn_)
    onednn_ = std::make_shared<OnednnMatmul>(weight_.data<float>(), N(), K());
  if (is_cuda(t) && !cuda_[cuda_slot(t)]) {
    if (t != Tactic::cuda_cublas && !is_24_) fail("the {} tactic needs a 2:4 weight", tactic_name(t));
    cuda_[cuda_slot(t)] = std::make_shared<CudaLinear>(CudaGemmKind(cuda_slot(t)), weight_);
  }
  tactic_ = t;
}

void LinearLayer::set_sparse_kernel(const cpu::Spmm24Kernel* kernel, int64_t M) {
  if (kernel && kernel->weight_dtype != DType::f32)
    fail("2:4 kernel {} takes {} weights, the layer's are f32", kernel->name,
         dtype_name(kernel->weight_dtype));
  if (kernel && uint8_t(kernel->isa) > uint8_t(cpu::active_isa()))
    fail("2:4 kernel {} needs {}, but this run uses at most {}", kernel->name, cpu::isa_name(kernel->isa),
         cpu::isa_name(cpu::active_isa()));
  sparse_kernel_ = kernel;
  sparse_kernel_m_ = kernel ? M : 0;
}

const cpu::Spmm24Kernel* LinearLayer::dispatched_kernel(int64_t M) const {
  if (tactic_ != Tactic::sparse24_cpu) return nullptr;
  return &cpu::choose_spmm24_kernel(packed_->dtype, M, cpu::active_isa(), omp_get_max_threads(),
                                    packed_->stream_bytes());
}

void LinearLayer::epilogue(int64_t M, float* Y, int64_t ldy) const {
  if (bias_.empty() && act_ == Activation::none) return;
  const int64_t n = N();
  const float* b = bias_.empty() ? nullptr : bias_.data();
  ops::parallel_for(M, M * n > 16384, [&](int64_t m) {
    float* y = Y + m * ldy;
    if (b)
      for (int64_t j = 0; j < n; ++j) y[j] += b[j];
    if (act_ == Activation::relu)
      for (int64_t j = 0; j < n; ++j) y[j] = std::max(y[j], 0.0f);
    else if (act_ == Activation::relu6)
      for (int64_t j = 0; j < n; ++j) y[j] = std::min(std::max(y[j], 0.0f), 6.0f);
    else if (act_ == Activation::gelu)
      ops::gelu_f32(y, y, n);
  });
}

const cpu::Spmm24Kernel* LinearLayer::patch_kernel() const {
  return tactic_ == Tactic::sparse24_cpu ? cpu::choose_spmm24_patch_kernel(packed_->dtype, cpu::active_isa())
                                         : nullptr;
}

bool LinearLayer::run_patches(const cpu::ConvPatches& patches, int64_t M, float* Y, int64_t ldy,
                              const float* residual, bool residual_relu,
                              std::function<void(int thread, int threads)> then) const {
  if (tactic_ != Tactic::sparse24_cpu) return false;
  if ((residual || then) && act_ == Activation::gelu)
    fail("run_patches: a residual or a second phase cannot follow GELU");
  const cpu::Spmm24Kernel* kernel = patch_kernel();
  if (!kernel) return false;
  run_sparse(M, nullptr, 0, &patches, kernel, Y, ldy, residual, residual_relu, nullptr, std::move(then));
  return true;
}

bool LinearLayer::pool_patches(const cpu::ConvPatches& patches, int64_t M, float* pool, int64_t ldpool,
                               const float* residual, bool residual_relu) const {
  const cpu::Spmm24Kernel* kernel = patch_kernel();
  if (!kernel || act_ == Activation::gelu || ldpool != N()) return false;
  cpu::Spmm24Args a;
  a.M = M;
  a.patches = &patches;
  a.W = &*packed_;
  a.ldy = ldpool;
  a.act = act_;
  if (!cpu::kernel_pools(*kernel, a)) return false;
  run_sparse(M, nullptr, 0, &patches, kernel, nullptr, ldpool, residual, residual_relu, pool);
  return true;
}

void LinearLayer::run_sparse(int64_t M, const float* X, int64_t ldx, const cpu::ConvPatches* patches,
                             const cpu::Spmm24Kernel* kernel, float* Y, int64_t ldy, const float* residual,
                             bool residual_relu, float* pool,
                             std::function<void(int thread, int threads)> then) const {
  cpu::Spmm24Args a;
  a.M = M;
  a.X = X;
  a.ldx = ldx;
  a.patches = patches;
  a.W = &*packed_;
  a.bias = bias_.empty() ? nullptr : bias_.data();
  // The kernels' GELU is the exact double-precision oracle; the engine uses the vectorized one of its ops
  // for every tactic, so they agree and none pays a scalar erf per output.
  a.act = act_ == Activation::gelu ? Activation::none : act_;
  a.Y = Y;
  a.ldy = ldy;
  a.residual = residual;
  a.residual_relu = residual_relu;
  a.pool = pool;
  a.then = std::move(then);
  if (!kernel && sparse_kernel_ && M == sparse_kernel_m_) kernel = sparse_kernel_;
  if (kernel)
    cpu::spmm24_run(*kernel, a);
  else
    cpu::spmm24(a);
  if (act_ == Activation::gelu) {
    ops::parallel_for(M, M * N() > 16384, [&](int64_t m) { ops::gelu_f32(Y + m * ldy, Y + m * ldy, N()); });
  }
}

void LinearLayer::run(int64_t M, const float* X, int64_t ldx, float* Y, int64_t ldy) const {
  if (tactic_ == Tactic::sparse24_cpu) {
    run_sparse(M, X, ldx, nullptr, nullptr, Y, ldy);
    return;
  }
  if (tactic_ == Tactic::dense_onednn) {
    onednn_->run(M, X, ldx, Y, ldy);
    epilogue(M, Y, ldy);
    return;
  }
  if (is_cuda(tactic_)) {
    cuda_[cuda_slot(tactic_)]->run(M, X, ldx, Y, ldy);
    epilogue(M, Y, ldy);
    return;
  }
  ops::blas_sgemm(false, true, M, N(), K(), 1.0f, X, ldx, weight_.data<float>(), K(), 0.0f, Y, ldy);
  epilogue(M, Y, ldy);
}

}  // namespace sparse24::engine
