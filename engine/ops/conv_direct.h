#pragma once
// Direct convolution for a short reduction, on channels-last tensors: K = kernel area x input channels of at
// most kDirectConvMaxK, as in an image model's stem (3x3 over 1 or 3 channels). A GEMM has nothing to reuse
// at such K: oneDNN and im2col spend their time writing the output, and a MaxPool after it reads all of that
// back. Here each output pixel's sums stay in registers, bias and ReLU (or ReLU6) are applied there, and an
// optional non-overlapping max pool (window = stride, no padding: fuse_conv_pool's pattern) is taken before
// anything is stored, so only the pooled tensor ever reaches memory.
#include <cstdint>
#include <vector>

#include "engine/ops/conv_gemm.h"
#include "format/tensor.h"
#include "kernels/cpu/isa.h"
#include "reference/gemm.h"

namespace sparse24::engine::ops {

/// The longest reduction (kernel area x input channels) the direct convolution takes.
inline constexpr int64_t kDirectConvMaxK = 32;

/// A convolution's weight in the direct kernels' layout, made once.
struct DirectConvWeights {
  int64_t oc = 0;      ///< output channels
  int64_t oc_pad = 0;  ///< oc rounded up to 64: a whole channel block of every SIMD width
  int64_t k = 0;       ///< kernel area x input channels, ordered (kernel position, input channel)
  bool relu = false, relu6 = false;                  ///< relu6: then also at most 6
  std::vector<float, AlignedAllocator<float>> w;     ///< [k][oc_pad], zero past oc
  std::vector<float, AlignedAllocator<float>> bias;  ///< [oc_pad], zero where there is none
};

/// From the canonical weight [OC][K] (conv_gemm.h), its bias (empty or OC values) and activation: none,
/// ReLU or ReLU6 (Error for another).
DirectConvWeights direct_conv_weights(const Tensor& canonical, const std::vector<float>& bias,
                                      reference::Activation act);

/// True when the direct convolution runs this geometry: 2-D, one group, K <= kDirectConvMaxK.
bool direct_conv_applies(const ConvShape& shape);

/// y[n][ph][pw][oc] = max over the pool_h x pool_w window of act(conv(x) + bias), x [N][H][W][C] and y
/// channels-last; pool 1 x 1 is the plain convolution. Pooled rows and columns past the last whole window
/// are dropped, as MaxPool without ceil_mode does. Runs the kernel of `isa` (which the CPU must support);
/// threads over output rows.
void conv_direct_nhwc(const DirectConvWeights& w, const ConvShape& shape, int64_t pool_h, int64_t pool_w,
                      const float* x, float* y, cpu::Isa isa = cpu::active_isa());

}  // namespace sparse24::engine::ops
