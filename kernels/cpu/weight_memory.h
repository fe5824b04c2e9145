#pragma once
// Memory for packed weights: 2 MiB-aligned chunks advised onto transparent huge pages before they are
// touched, shared by many layers so that a small weight needs no 2 MiB page of its own.
//
// Why: a kernel that reads weights from memory (every GEMV call, and a panel GEMM whose weights are not in
// the caches) walks the page tables once per 4 KiB page the TLB no longer holds. The panel GEMM reads each
// tile's K slice (4-8 KiB) a whole tile apart, a new page every slice. Measured on Zen 5 with the weights
// rotated through copies larger than the L3 (a throwaway harness calling the kernel), f32 M = 32, one
// thread: 768x768 0.126-0.130 ms on 4 KiB pages, 0.104 on huge pages (0.100 with the weights in L3),
// 1536x384 0.128-0.130 -> 0.105-0.108; two threads 0.065-0.069 -> 0.061.
#include <cstddef>
#include <vector>

namespace sparse24::cpu {

/// 64-byte aligned storage from the shared huge-page chunks (thread-safe). A block of 8 MiB or more gets
/// chunks of its own, rounded up to 2 MiB; smaller ones share 16 MiB chunks, and a chunk is returned to the
/// system when its last block is freed.
void* weight_allocate(size_t bytes);
void weight_deallocate(void* p, size_t bytes) noexcept;

/// Bytes of chunks currently held (for tests: the sharing and the return of chunks).
size_t weight_memory_held();

template <typename T>
struct WeightAllocator {
  using value_type = T;
  WeightAllocator() = default;
  template <typename U>
  WeightAllocator(const WeightAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(weight_allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { weight_deallocate(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const WeightAllocator<U>&) const {
    return true;
  }
};

/// The byte buffers of a Packed24.
using WeightBytes = std::vector<std::byte, WeightAllocator<std::byte>>;

}  // namespace sparse24::cpu
