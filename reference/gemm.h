#pragma once
// The one oracle: plain loops, no SIMD, no blocking, no threads. Every kernel in sparse24 is tested against
// these functions. Y[M][N] = act(X[M][K] · W[N][K]ᵀ + bias); sums run over k in ascending order.
#include <cstdint>

#include "format/pattern24.h"

namespace sparse24::reference {

/// Epilogue activation fused after the bias.
/// relu6 = min(max(x, 0), 6): MobileNetV2's ReLU6, exported as Clip(0, 6).
enum class Activation : uint8_t { none, relu, gelu, relu6 };

/// GELU, the exact erf form: 0.5·x·(1 + erf(x/√2)).
float gelu(float x);
/// The activation applied to one value.
float activate(float x, Activation act);

/// Dense f32: W is [N][K] row-major with leading dimension ldw; bias may be null.
void gemm_dense_f32(int64_t M, int64_t N, int64_t K, const float* X, int64_t ldx, const float* W, int64_t ldw,
                    const float* bias, Activation act, float* Y, int64_t ldy);

/// 2:4 with f32 activations, computed from the compressed form (portable layout; f32, f16 or bf16 values,
/// each widened to f32 exactly). Throws Error for another layout or dtype.
void gemm_24_f32(int64_t M, const float* X, int64_t ldx, const Sparse24& W, const float* bias, Activation act,
                 float* Y, int64_t ldy);

/// Dense int8 x int8 with int32 accumulation: Y[M][N] (int32).
void gemm_dense_i8(int64_t M, int64_t N, int64_t K, const int8_t* X, int64_t ldx, const int8_t* W,
                   int64_t ldw, int32_t* Y, int64_t ldy);

/// 2:4 int8 x int8 with int32 accumulation, from the compressed form (portable layout, i8 values).
void gemm_24_i8(int64_t M, const int8_t* X, int64_t ldx, const Sparse24& W, int32_t* Y, int64_t ldy);

/// Quantized 2:4 layer: acc as gemm_24_i8, then Y = act(float(acc) * (x_scale * w_scale[n]) + bias[n]) in f32
/// (the product of scales rounded to f32 first; bias may be null).
void gemm_24_i8_scaled(int64_t M, const int8_t* X, int64_t ldx, float x_scale, const Sparse24& W,
                       const float* w_scale, const float* bias, Activation act, float* Y, int64_t ldy);

}  // namespace sparse24::reference
