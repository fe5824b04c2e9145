#include "format/tensor.h"

#include <cmath>

#include "util/error.h"

namespace sparse24 {

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Plain concatenation (no {fmt}) so that format/ also builds in the CUDA-only configuration.
std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor::Tensor(DType dtype, std::vector<int64_t> shape) : dtype_(dtype), shape_(std::move(shape)) {
  for (int64_t d : shape_)
    if (d < 0) fail("negative dimension in shape {}", shape_str(shape_));
  storage_.assign(size_t(numel()) * dtype_size(dtype_), std::byte{0});
}

Tensor Tensor::uninitialized(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  for (int64_t d : t.shape_)
    if (d < 0) fail("negative dimension in shape {}", shape_str(t.shape_));
  t.storage_.resize(size_t(t.numel()) * dtype_size(dtype));
  return t;
}

float Tensor::get(int64_t i) const {
  switch (dtype_) {
    case DType::f32:
      return data<float>()[i];
    case DType::f16:
      return f16_to_f32(data<uint16_t>()[i]);
    case DType::bf16:
      return bf16_to_f32(data<uint16_t>()[i]);
    case DType::i8:
      return float(data<int8_t>()[i]);
    case DType::i32:
      return float(data<int32_t>()[i]);
    case DType::i64:
      return float(data<int64_t>()[i]);
    case DType::boolean:
      return float(data<uint8_t>()[i] != 0);
  }
  return 0;
}

template <typename I>
static I saturate(float v) {
  if (std::isnan(v)) return 0;
  float lo = float(std::numeric_limits<I>::min()), hi = float(std::numeric_limits<I>::max());
  return v <= lo   ? std::numeric_limits<I>::min()
         : v >= hi ? std::numeric_limits<I>::max()
                   : I(std::nearbyint(v));
}

void Tensor::set(int64_t i, float v) {
  switch (dtype_) {
    case DType::f32:
      data<float>()[i] = v;
      break;
    case DType::f16:
      data<uint16_t>()[i] = f32_to_f16(v);
      break;
    case DType::bf16:
      data<uint16_t>()[i] = f32_to_bf16(v);
      break;
    case DType::i8:
      data<int8_t>()[i] = saturate<int8_t>(v);
      break;
    case DType::i32:
      data<int32_t>()[i] = saturate<int32_t>(v);
      break;
    case DType::i64:
      data<int64_t>()[i] = saturate<int64_t>(v);
      break;
    case DType::boolean:
      data<uint8_t>()[i] = v != 0.0f;
      break;
  }
}

Tensor Tensor::reshaped(std::vector<int64_t> shape) const {
  if (shape_numel(shape) != numel())
    fail("cannot reshape {} to {}: element counts differ", shape_str(shape_), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t(dtype, shape_);
  for (int64_t i = 0; i < numel(); ++i) t.set(i, get(i));
  return t;
}

}  // namespace sparse24
