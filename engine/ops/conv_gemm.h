#pragma once
// Convolution as GEMM, with the GEMM step a parameter so that the dense (OpenBLAS) path and the planner's 2:4
// kernels share one im2col. The weight is in the canonical form of graph/weights.h: Wc[OC][K] with
// K = prod(kernel) · IC/g ordered (kernel position, input channel), input channels innermost, so that the
// 2:4 groups (along IC at each kernel position) are contiguous. The patch matrix P[rows][K] uses the same
// order, and Y = P · Wcᵀ.
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"

namespace sparse24::engine::ops {

/// One GEMM of a convolution, for group `group`: Y[M][N] = X[M][K] · Wg[N][K]ᵀ, where Wg is rows
/// [group·N, (group+1)·N) of the canonical weight (N = OC/g). X and Y are row-major with leading dims ldx,
/// ldy; Y is overwritten. Called outside any OpenMP parallel region, so it may thread internally.
using ConvGemm = std::function<void(int64_t group, int64_t M, int64_t N, int64_t K, const float* X,
                                    int64_t ldx, float* Y, int64_t ldy)>;

/// A convolution's sizes, with the window (pads, strides, dilations, auto_pad) resolved.
struct ConvShape {
  int64_t batch = 0, in_channels = 0, out_channels = 0, groups = 1;
  WindowGeometry window;  ///< per spatial dim: input, kernel, strides, dilations, pads, output sizes
  int64_t kernel_volume() const { return shape_numel(window.kernel); }
  int64_t in_pixels() const { return shape_numel(window.in); }
  int64_t out_pixels() const { return shape_numel(window.out); }
  int64_t K() const { return kernel_volume() * (in_channels / groups); }  ///< reduction length per group
  /// [batch][OC][out...]
  std::vector<int64_t> output_shape() const;
};

/// Resolves a Conv node's geometry from the shapes of X [N][C][in...] and W [OC][C/g][k...] (1 to 3 spatial
/// dims); throws Error naming the node when they disagree or an attribute is invalid.
ConvShape conv_shape(const Node& node, const std::vector<int64_t>& x_shape,
                     const std::vector<int64_t>& w_shape);

/// ONNX W[OC][IC/g][k...] to the canonical [OC][k... · IC/g] (input channel innermost); f32.
Tensor conv_weight_canonical(const Tensor& onnx_weight);

/// Builds rows [row0, row0 + rows) of group `group`'s patch matrix P[batch · out_pixels][K] (row = image ·
/// out_pixels + output position, K ordered (kernel position, input channel)) into `patches` (ld = K), from
/// the input transposed to channels-last, `x_nhwc` [batch][in_pixels][C]. Padding reads as zero.
void im2col_rows(const ConvShape& shape, const float* x_nhwc, int64_t group, int64_t row0, int64_t rows,
                 float* patches);

/// y[batch][OC][out...] = conv(x[batch][IC][in...]) + bias (bias may be null), through `gemm` on im2col
/// patch tiles (a 1x1, stride-1, unpadded conv skips im2col and hands the channels-last input straight in).
/// With channels_last, x is [batch][in...][IC] and y [batch][out...][OC]: no transposes at all.
void conv_as_gemm(const ConvShape& shape, const float* x, const ConvGemm& gemm, const float* bias, float* y,
                  bool channels_last = false);

/// Direct convolution for one input channel per group (depthwise, any channel multiplier), from the ONNX
/// weight W[OC][1][k...]: such a conv has K = prod(kernel) per group, too short for a GEMM to pay and never
/// 2:4-eligible (its groups would run along IC/g = 1).
void conv_depthwise_direct(const ConvShape& shape, const float* x, const float* w, const float* bias,
                           float* y);

/// The attributes the optimizer puts on a channels-last depthwise Conv whose ReLU (an int, 1) or Clip (its
/// bounds, [lo, hi]) it took in.
inline constexpr const char* kDepthwiseReluAttr = "sparse24_relu";
inline constexpr const char* kDepthwiseClipAttr = "sparse24_clip";

/// The same convolution for one input channel per output channel (group = IC = OC) on channels-last
/// tensors, x [N][in...][C] -> y [N][out...][C], every output pixel's channels in vector registers, with the
/// weight as [tap][C] (w_by_tap[t·C + c] = W[c][0][t]); the same bits as conv_depthwise_direct (then the
/// epilogue: the Relu or the Clip op it took in).
void conv_depthwise_nhwc(const ConvShape& shape, const float* x, const float* w_by_tap, const float* bias,
                         float* y, DepthwiseEpilogue epilogue = {});

/// The dense ConvGemm: OpenBLAS sgemm (sgemv for one row) on a canonical weight [OC][K] that the caller
/// keeps alive.
ConvGemm blas_conv_gemm(const float* canonical_weight);

/// Row-major C[M][N] = alpha · op(A) · op(B) + beta · C through OpenBLAS, with sgemv when M or N is 1 (where
/// OpenBLAS sgemm is several times slower). op(A) is [M][K], op(B) is [K][N]. OpenBLAS runs single-threaded;
/// a large product is split across the OpenMP team (serial when called inside a parallel region).
void blas_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace sparse24::engine::ops
