#pragma once
// A dense tensor: dtype, shape and 64-byte-aligned row-major storage.
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "format/dtype.h"

namespace sparse24 {

/// Allocator giving 64-byte alignment (a cache line, a full AVX-512 register) for SIMD kernels.
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const {
    return true;
  }
};

/// AlignedAllocator whose resize() leaves new elements uninitialised (value-initialisation still zeroes).
template <typename T>
struct DefaultInitAllocator : AlignedAllocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) {}
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

/// Byte buffer with 64-byte alignment.
using AlignedBytes = std::vector<std::byte, AlignedAllocator<std::byte>>;

/// Number of elements of a shape (1 for a scalar).
int64_t shape_numel(const std::vector<int64_t>& shape);
/// "[2, 3, 4]".
std::string shape_str(const std::vector<int64_t>& shape);

/// Dense tensor owning its storage.
class Tensor {
 public:
  Tensor() = default;
  /// Zero-filled tensor.
  Tensor(DType dtype, std::vector<int64_t> shape);
  /// Tensor whose elements are left unset, for an op that writes every one of them: large activations
  /// then cost no zero-filling pass over memory.
  static Tensor uninitialized(DType dtype, std::vector<int64_t> shape);

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int rank() const { return int(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return storage_.size(); }

  std::byte* bytes() { return storage_.data(); }
  const std::byte* bytes() const { return storage_.data(); }
  template <typename T>
  T* data() {
    assert(sizeof(T) == dtype_size(dtype_));
    return reinterpret_cast<T*>(storage_.data());
  }
  template <typename T>
  const T* data() const {
    assert(sizeof(T) == dtype_size(dtype_));
    return reinterpret_cast<const T*>(storage_.data());
  }

  /// Element i as float, whatever the dtype (exact for every dtype but large i32/i64).
  float get(int64_t i) const;
  /// Stores v at element i, rounding to nearest even for f16/bf16, saturating for integers.
  void set(int64_t i, float v);

  /// Same bytes, new shape of equal element count.
  Tensor reshaped(std::vector<int64_t> shape) const;
  /// Element-wise conversion to another dtype (rounding as set()).
  Tensor to(DType dtype) const;

 private:
  DType dtype_ = DType::f32;
  std::vector<int64_t> shape_;
  std::vector<std::byte, DefaultInitAllocator<std::byte>> storage_;
};

}  // namespace sparse24
