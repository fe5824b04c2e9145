#include "reference/gemm.h"

#include <cmath>
#include <vector>

#include "util/error.h"

namespace sparse24::reference {

float gelu(float x) {
  return float(0.5 * double(x) * (1.0 + std::erf(double(x) / std::sqrt(2.0))));
}

float activate(float x, Activation act) {
  switch (act) {
    case Activation::none:
      return x;
    case Activation::relu:  // a NaN stays NaN, as in onnxruntime's Relu
      return x < 0.0f ? 0.0f : x;
    case Activation::gelu:
      return gelu(x);
    case Activation::relu6:
      return x < 0.0f ? 0.0f : x > 6.0f ? 6.0f : x;
  }
  return x;
}

void gemm_dense_f32(int64_t M, int64_t N, int64_t K, const float* X, int64_t ldx, const float* W, int64_t ldw,
                    const float* bias, Activation act, float* Y, int64_t ldy) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += X[m * ldx + k] * W[n * ldw + k];
      if (bias) acc += bias[n];
      Y[m * ldy + n] = activate(acc, act);
    }
}

static void require_portable(const Sparse24& W, const char* fn) {
  if (W.layout != Layout24::portable) fail("reference::{}: the weight must be in the portable layout", fn);
}

void gemm_24_f32(int64_t M, const float* X, int64_t ldx, const Sparse24& W, const float* bias, Activation act,
                 float* Y, int64_t ldy) {
  require_portable(W, "gemm_24_f32");
  auto value = [&](int64_t i) -> float {
    switch (W.dtype) {
      case DType::f32:
        return W.value_data<float>()[i];
      case DType::f16:
        return f16_to_f32(W.value_data<uint16_t>()[i]);
      case DType::bf16:
        return bf16_to_f32(W.value_data<uint16_t>()[i]);
      default:
        fail("reference::gemm_24_f32: {} values need gemm_24_i8", dtype_name(W.dtype));
    }
  };
  const int64_t G = W.groups_per_row();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < W.rows; ++n) {
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        uint8_t nib = W.nibble(n, g);
        const float* x = X + m * ldx + g * 4;
        acc += x[nib & 3] * value((n * G + g) * 2);
        acc += x[nib >> 2] * value((n * G + g) * 2 + 1);
      }
      if (bias) acc += bias[n];
      Y[m * ldy + n] = activate(acc, act);
    }
}

void gemm_dense_i8(int64_t M, int64_t N, int64_t K, const int8_t* X, int64_t ldx, const int8_t* W,
                   int64_t ldw, int32_t* Y, int64_t ldy) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += int32_t(X[m * ldx + k]) * int32_t(W[n * ldw + k]);
      Y[m * ldy + n] = acc;
    }
}

void gemm_24_i8(int64_t M, const int8_t* X, int64_t ldx, const Sparse24& W, int32_t* Y, int64_t ldy) {
  require_portable(W, "gemm_24_i8");
  if (W.dtype != DType::i8) fail("reference::gemm_24_i8: values are {}, not i8", dtype_name(W.dtype));
  const int8_t* v = W.value_data<int8_t>();
  const int64_t G = W.groups_per_row();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < W.rows; ++n) {
      int32_t acc = 0;
      for (int64_t g = 0; g < G; ++g) {
        uint8_t nib = W.nibble(n, g);
        const int8_t* x = X + m * ldx + g * 4;
        acc += int32_t(x[nib & 3]) * v[(n * G + g) * 2] + int32_t(x[nib >> 2]) * v[(n * G + g) * 2 + 1];
      }
      Y[m * ldy + n] = acc;
    }
}

void gemm_24_i8_scaled(int64_t M, const int8_t* X, int64_t ldx, float x_scale, const Sparse24& W,
                       const float* w_scale, const float* bias, Activation act, float* Y, int64_t ldy) {
  std::vector<int32_t> acc(size_t(M * W.rows));
  gemm_24_i8(M, X, ldx, W, acc.data(), W.rows);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < W.rows; ++n) {
      const float scale = x_scale * w_scale[n];
      float y = float(acc[size_t(m * W.rows + n)]) * scale;
      if (bias) y += bias[n];
      Y[m * ldy + n] = activate(y, act);
    }
}

}  // namespace sparse24::reference
