#pragma once
// Owning device allocation (cudaMalloc/cudaFree), move-only.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace sparse24::cuda {

/// A block of device memory owned by this object; freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /// Allocates `bytes` bytes (none when 0). Throws Error naming cudaMalloc on failure.
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes) S24_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return bytes_; }

  /// Copies `bytes` bytes from host memory, asynchronously on `stream` (the host buffer must outlive it).
  void upload(const void* host, size_t bytes, cudaStream_t stream) {
    S24_CUDA_CHECK(cudaMemcpyAsync(ptr_, host, bytes, cudaMemcpyHostToDevice, stream));
  }

 private:
  void reset() {
    if (ptr_) cudaFree(ptr_);  // an error here (device lost) cannot be reported from a destructor
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace sparse24::cuda
