#pragma once
// Dense f32 GEMM through oneDNN's matmul primitive: Y[M][N] = X[M][K] · W[N][K]ᵀ. Primitives and the weight
// in oneDNN's preferred (blocked) layout are made once per distinct M and reused for every later call.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

namespace sparse24::engine {

/// One weight's oneDNN matmuls.
class OnednnMatmul {
 public:
  /// W: [N][K] row-major f32, kept alive by the caller.
  OnednnMatmul(const float* W, int64_t N, int64_t K);
  ~OnednnMatmul();
  /// Y = X · Wᵀ (no bias, no activation).
  void run(int64_t M, const float* X, int64_t ldx, float* Y, int64_t ldy) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparse24::engine
