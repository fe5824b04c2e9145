#pragma once
// Dense convolution through oneDNN's convolution primitive (any spatial rank oneDNN takes: 1-D to 3-D),
// with the bias and the fused Relu/GELU as post-ops. The dense tactic of a lowered Conv: it reads the input
// as it lies (NCHW) instead of building im2col patches. Primitives are made once per input shape.
#include <cstdint>
#include <memory>

#include "engine/ops/conv_gemm.h"
#include "reference/gemm.h"

namespace sparse24::engine {

/// One Conv layer's oneDNN convolutions.
class OnednnConv {
 public:
  /// canonical_weight: [OC][k... · IC] (input channel innermost), as LinearLayer holds it; bias empty or OC.
  OnednnConv(const Tensor& canonical_weight, const std::vector<int64_t>& weight_shape,
             const std::vector<float>& bias, reference::Activation act);
  ~OnednnConv();
  /// y[batch][OC][out...] = act(conv(x) + bias); with channels_last, x [batch][in...][IC] and
  /// y [batch][out...][OC] (the layout oneDNN computes in here: no reorders). With a residual r (y's shape
  /// and layout), y = post(act(conv(x) + bias) + r), post being ReLU when residual_relu: a residual block's
  /// Add and ReLU as post-ops of the convolution.
  void run(const ops::ConvShape& shape, const float* x, float* y, bool channels_last = false,
           const float* residual = nullptr, bool residual_relu = false) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparse24::engine
