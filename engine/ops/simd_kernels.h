#pragma once
// The compute-bound inner loops of the element-wise ops, each compiled for x86-64-v4 (AVX-512), x86-64-v3
// (AVX2) and baseline x86-64 and picked once at load time for the CPU at hand (GCC target_clones); the
// channels-last window kernels (max_taps_f32 .. depthwise_row_f32) are compiled per ISA by hand and follow
// the active ISA (SPARSE24_ISA), so the tests run each of them. The element-wise and window kernels give
// identical bits on every path: the engine is built with -ffp-contract=off (no a·b + c fused into FMA), and
// the math is vmath.h's, not libm's. The row kernels (softmax, layer norm) sum in double in SIMD-lane
// order, so their results can differ between CPUs in the last bit of a float, rarely.
#include <cstdint>

namespace sparse24::engine::ops {

/// y[i] = erf(x[i]).
void erf_f32(const float* x, float* y, int64_t n);
/// y[i] = 0.5 · x · (1 + erf(x / √2)) (GELU, exact form, evaluated as vgelu: |error| <= 1e-7·|x|).
void gelu_f32(const float* x, float* y, int64_t n);
/// y[i] = 1 / (1 + e^-x).
void sigmoid_f32(const float* x, float* y, int64_t n);
/// y[i] = y[i] + r[i], then max(., 0) when relu: a residual block's Add (and ReLU) after its convolution.
void residual_add_f32(float* y, const float* r, int64_t n, bool relu);
/// y[c] = the max of taps[t][c] over t in [0, taps) for c in [0, C), from -inf (so a NaN input is passed
/// over, as MaxPool's comparison does): one channels-last max-pool window, its running maxima in registers.
void max_taps_f32(const float* const* tap, int64_t taps, int64_t C, float* y);
/// y[c] = the sum of tap[t][c] over t in [0, taps) in that order, from 0: one channels-last average-pool
/// window before its division.
void sum_taps_f32(const float* const* tap, int64_t taps, int64_t C, float* y);
/// What a channels-last depthwise convolution applies to each sum before it stores it: nothing, the Relu
/// op's x > 0 ? x : 0, or the Clip op's bounds (x < lo ? lo : x, then > hi ? hi : x; a NaN stays NaN).
struct DepthwiseEpilogue {
  enum Kind : uint8_t { none, relu, clip } kind = none;
  float lo = 0.0f, hi = 0.0f;  ///< clip's bounds
};

/// y[c] = bias[c] (0 where bias is null) + w[0][c]·x[0][c] + w[1][c]·x[1][c] + ..., over the taps in
/// order, each product rounded before its sum, then the epilogue: one output pixel of a channels-last
/// depthwise convolution, the same bits as conv_depthwise_direct's (and the Relu or Clip op's).
void depthwise_taps_f32(const float* const* x, const float* const* w, int64_t taps, const float* bias,
                        int64_t C, DepthwiseEpilogue e, float* y);
/// `pixels` neighbouring output pixels of a channels-last depthwise convolution whose windows are all inside
/// the input along the row: pixel j's tap k on kernel line l reads line[l] + j·pixel_step + k·tap_step
/// (floats) with the weights wline[l] + k·C, and y + j·C gets bias + the taps in (line, k) order, each
/// product rounded before its sum (the same bits as depthwise_taps_f32), then the epilogue. Four pixels
/// at a time share each weight load.
void depthwise_row_f32(const float* const* line, const float* const* wline, int64_t lines, int64_t taps,
                       int64_t pixel_step, int64_t tap_step, const float* bias, int64_t C, int64_t pixels,
                       DepthwiseEpilogue e, float* y);
/// Softmax (or log-softmax) of one contiguous row of n values.
void softmax_row_f32(const float* x, float* y, int64_t n, bool log_softmax);
/// In place, one row of attention probabilities: row = softmax(row + mask), mask read at mask[j * mask_step]
/// (mask_step 0 broadcasts one value; mask may be null). Sums in float: rows are key lengths, short enough.
/// Runs attention_softmax_row_f32_avx512 where the active ISA (kernels/cpu/isa.h) is AVX-512, else the
/// generic clones; the two agree within 1e-6 relative.
void attention_softmax_row_f32(float* row, const float* mask, int64_t mask_step, int64_t n);
void attention_softmax_row_f32_generic(float* row, const float* mask, int64_t mask_step, int64_t n);
#if defined(__x86_64__) && defined(__GNUC__)
void attention_softmax_row_f32_avx512(float* row, const float* mask, int64_t mask_step, int64_t n);
#endif
/// One row of layer normalisation: y = (x - mean) / sqrt(var + eps) · scale (+ bias; bias may be null).
/// Mean and variance are accumulated in double. Returns the mean and 1/sqrt(var + eps) through the pointers.
void layer_norm_row_f32(const float* x, const float* scale, const float* bias, float* y, int64_t n,
                        double epsilon, float* mean_out, float* inv_std_out);

}  // namespace sparse24::engine::ops
