// Element-wise activations and the softmax family.
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>

#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "engine/ops/vmath.h"
#include "util/error.h"

namespace sparse24::engine::ops {

void run_relu(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  map_f32(node, required_input(node, in, 0), out[0],
          [](float x) { return x < 0.0f ? 0.0f : x; });  // NaN stays NaN
}

namespace {

// y = min(max(x, lo), hi) element by element, as comparisons: a NaN x stays NaN (numpy.clip's answer), and
// with lo > hi every element is hi.
template <typename T>
void clip_typed(const Node& node, const Tensor& x, const Tensor* lo_t, const Tensor* hi_t, T lo, T hi,
                Tensor& y) {
  const auto bound = [&](const Tensor* t, const char* what, T& v) {
    if (!t) return;
    if (t->dtype() != x.dtype() || t->numel() != 1)
      fail("node '{}' (Clip): {} must be a single {} value, got {} {}", node.name, what,
           dtype_name(x.dtype()), dtype_name(t->dtype()), shape_str(t->shape()));
    v = t->data<T>()[0];
  };
  bound(lo_t, "min", lo);
  bound(hi_t, "max", hi);
  y = Tensor::uninitialized(x.dtype(), x.shape());
  const T* src = x.data<T>();
  T* dst = y.data<T>();
  parallel_ranges(x.numel(), [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const T v = src[i] < lo ? lo : src[i];
      dst[i] = v > hi ? hi : v;
    }
  });
}

}  // namespace

// Clip (ReLU6 as MobileNet exports it): bounds from the optional inputs min and max (opset 11+) or the
// attributes (before), each absent one leaving that side open.
void run_clip(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  const Tensor* lo = node.opset >= 11 ? optional_input(in, 1) : nullptr;
  const Tensor* hi = node.opset >= 11 ? optional_input(in, 2) : nullptr;
  switch (x.dtype()) {
    case DType::f32: {
      const auto [lo_attr, hi_attr] = clip_attribute_bounds(node);
      return clip_typed<float>(node, x, lo, hi, lo_attr, hi_attr, out[0]);
    }
    case DType::i8:
      return clip_typed<int8_t>(node, x, lo, hi, INT8_MIN, INT8_MAX, out[0]);
    case DType::i32:
      return clip_typed<int32_t>(node, x, lo, hi, INT32_MIN, INT32_MAX, out[0]);
    case DType::i64:
      return clip_typed<int64_t>(node, x, lo, hi, INT64_MIN, INT64_MAX, out[0]);
    default:
      fail("node '{}' (Clip): input is {}; f32, i8, i32 and i64 are supported", node.name,
           dtype_name(x.dtype()));
  }
}

void run_sigmoid(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  map_f32_kernel(node, required_input(node, in, 0), out[0], sigmoid_f32);
}

void run_tanh(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  map_f32(node, required_input(node, in, 0), out[0], [](float x) { return std::tanh(x); });
}

void run_gelu(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const std::string approximate = node.attrs.get_string("approximate", "none");
  const Tensor& x = required_input(node, in, 0);
  if (approximate == "none") {
    map_f32_kernel(node, x, out[0], gelu_f32);
  } else if (approximate == "tanh") {
    constexpr float kSqrt2OverPi = float(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);
    map_f32(node, x, out[0], [](float v) {
      return 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
    });
  } else {
    fail("node '{}' (Gelu): approximate='{}' is not supported (expected 'none' or 'tanh')", node.name,
         approximate);
  }
}

namespace {

// Softmax over n values spaced `stride` apart (an axis other than the last), as softmax_row_f32 computes it.
template <bool kLog>
void softmax_strided(const float* x, float* y, int64_t n, int64_t stride) {
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i * stride]);
  double sum = 0;
  if constexpr (kLog) {
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += vexp(x[i * stride] - mx);
    // (x - max) first: adding log(sum) to a large max would round away the small differences.
    const float log_sum = float(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i * stride] = (x[i * stride] - mx) - log_sum;
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) {
      float e = vexp(x[i * stride] - mx);
      y[i * stride] = e;
      sum += e;
    }
    const float scale = float(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i * stride] *= scale;
  }
}

// Before opset 13 the input is coerced to 2-D at `axis` and the softmax runs over everything from `axis` on;
// from 13 it runs along `axis` alone.
template <bool kLog>
void run_softmax_family(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  require_dtype(node, x, {DType::f32}, "input");
  const bool per_axis = node.opset >= 13;
  const int rank = x.rank();
  if (rank == 0) fail("node '{}' ({}): input is a scalar", node.name, node.op);
  const int axis = normalize_axis(node, node.attrs.get_int("axis", per_axis ? -1 : 1), rank);
  const int64_t outer = dims_product(x.shape(), 0, axis);
  const int64_t n = per_axis ? x.shape()[size_t(axis)] : dims_product(x.shape(), axis, rank);
  const int64_t inner = per_axis ? dims_product(x.shape(), axis + 1, rank) : 1;
  out[0] = Tensor::uninitialized(DType::f32, x.shape());
  const float* src = x.data<float>();
  float* dst = out[0].data<float>();
  const int64_t rows = outer * inner;
  if (inner == 1) {  // the usual case (last axis): contiguous rows through the vectorised kernel
    parallel_for(rows, x.numel() >= kParallelMinElements && rows > 1,
                 [&](int64_t r) { softmax_row_f32(src + r * n, dst + r * n, n, kLog); });
    return;
  }
  parallel_for(rows, x.numel() >= kParallelMinElements && rows > 1, [&](int64_t r) {
    int64_t base = (r / inner) * n * inner + r % inner;
    softmax_strided<kLog>(src + base, dst + base, n, inner);
  });
}

}  // namespace

void run_softmax(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  run_softmax_family<false>(node, in, out);
}

void run_log_softmax(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  run_softmax_family<true>(node, in, out);
}

}  // namespace sparse24::engine::ops
