#include "kernels/cpu/weight_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <new>

namespace sparse24::cpu {

namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kSharedChunk = size_t(16) << 20;  // small blocks share chunks of this size
constexpr size_t kOwnChunk = kSharedChunk / 2;     // blocks from this size up get chunks of their own
constexpr size_t kBlockAlign = 64;

struct Chunk {
  std::byte* base;
  size_t size, used, live;  // live: blocks not yet freed
};

class Chunks {
 public:
  void* allocate(size_t bytes) {
    bytes = (std::max<size_t>(bytes, 1) + kBlockAlign - 1) / kBlockAlign * kBlockAlign;
    std::lock_guard lock(mutex_);
    if (bytes >= kOwnChunk) {
      Chunk& c = add((bytes + kHugePage - 1) / kHugePage * kHugePage);
      c.used = bytes, c.live = 1;
      return c.base;
    }
    Chunk* open = open_chunk();
    if (!open || open->size - open->used < bytes) {
      open = &add(kSharedChunk);  // what the old chunk has left stays unused until its blocks are freed
      open_ = open->base;
    }
    std::byte* p = open->base + open->used;
    open->used += bytes, ++open->live;
    return p;
  }

  void deallocate(void* p) noexcept {
    std::lock_guard lock(mutex_);
    const auto it = std::find_if(chunks_.begin(), chunks_.end(), [&](const Chunk& c) {
      return static_cast<std::byte*>(p) >= c.base && static_cast<std::byte*>(p) < c.base + c.size;
    });
    if (it == chunks_.end() || --it->live > 0) return;
    if (it->base == open_) open_ = nullptr;
    munmap(it->base, it->size);
    chunks_.erase(it);
  }

  size_t held() {
    std::lock_guard lock(mutex_);
    size_t total = 0;
    for (const Chunk& c : chunks_) total += c.size;
    return total;
  }

 private:
  Chunk* open_chunk() {
    for (Chunk& c : chunks_)
      if (c.base == open_) return &c;
    return nullptr;
  }

  // A new chunk mapped straight from the OS, 2 MiB-aligned, and advised onto huge pages before anything
  // touches it (so its pages are made huge as they are faulted in, where the OS grants huge pages on
  // request: madvise mode, as Debian ships). Not from the C++ heap: once large blocks have been freed, glibc
  // raises its mmap threshold and serves later ones from heap memory an earlier user already faulted in on
  // 4 KiB pages, where the advice no longer applies. That happened in `bench gemm` after the 4096x4096 shape
  // (the process's huge pages fell to none, and f32 M = 32, one thread, 768x3072 took 0.495-0.498 ms
  // against 0.407-0.420 on huge pages, 1536x384 0.125-0.129 against 0.104-0.106).
  Chunk& add(size_t size) {
    void* mapped =
        mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) throw std::bad_alloc();
    // Keep the 2 MiB-aligned part; return the rest of the over-sized mapping.
    auto* raw = static_cast<std::byte*>(mapped);
    const size_t head = (kHugePage - reinterpret_cast<uintptr_t>(raw) % kHugePage) % kHugePage;
    if (head) munmap(raw, head);
    if (kHugePage - head) munmap(raw + head + size, kHugePage - head);
    std::byte* base = raw + head;
#ifdef MADV_HUGEPAGE
    madvise(base, size, MADV_HUGEPAGE);  // advice only: without it the chunk works on 4 KiB pages
#endif
    chunks_.push_back({base, size, 0, 0});
    return chunks_.back();
  }

  std::mutex mutex_;
  std::vector<Chunk> chunks_;
  std::byte* open_ = nullptr;  // the shared chunk new small blocks come from
};

Chunks& chunks() {
  static Chunks* c = new Chunks;  // never destroyed: weights in static objects may outlive any order
  return *c;
}

}  // namespace

void* weight_allocate(size_t bytes) {
  return chunks().allocate(bytes);
}

void weight_deallocate(void* p, size_t) noexcept {
  if (p) chunks().deallocate(p);
}

size_t weight_memory_held() {
  return chunks().held();
}

}  // namespace sparse24::cpu
