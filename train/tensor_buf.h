#pragma once
// The tensors training works on: a shape and a flat row-major std::vector of float (training) or double (the
// gradient checks). One element type per trainer, so the same templated code serves both.
#include <cstdint>
#include <vector>

#include "format/tensor.h"

namespace sparse24::train {

/// A dense row-major tensor of T (float or double).
template <typename T>
struct Buf {
  std::vector<int64_t> shape;
  std::vector<T> data;

  Buf() = default;
  /// Zero-filled.
  explicit Buf(std::vector<int64_t> s) : shape(std::move(s)), data(size_t(shape_numel(shape)), T(0)) {}
  int64_t numel() const { return int64_t(data.size()); }
  int rank() const { return int(shape.size()); }
  int64_t dim(int i) const { return shape[size_t(i < 0 ? int(shape.size()) + i : i)]; }
  T* ptr() { return data.data(); }
  const T* ptr() const { return data.data(); }
};

/// A float tensor of any dtype converted element by element (i64 shapes, f16 weights, ...).
template <typename T>
Buf<T> buf_from_tensor(const Tensor& t) {
  Buf<T> b(t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) b.data[size_t(i)] = T(t.get(i));
  return b;
}

/// An f32 Tensor holding the buffer's values.
template <typename T>
Tensor tensor_from_buf(const Buf<T>& b) {
  Tensor t(DType::f32, b.shape);
  float* dst = t.data<float>();
  for (int64_t i = 0; i < b.numel(); ++i) dst[i] = float(b.data[size_t(i)]);
  return t;
}

}  // namespace sparse24::train
