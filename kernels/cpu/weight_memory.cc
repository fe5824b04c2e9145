#include "kernels/cpu/weight_memory.h"

#include <sys/mman.h>

#include <algorithm>
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
    ::operator delete(it->base, std::align_val_t(kHugePage));
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

  // A new chunk, advised onto huge pages before anything touches it (so its pages are made huge as they
  // are faulted in, where the OS grants huge pages on request: madvise mode, as Debian ships).
  Chunk& add(size_t size) {
    auto* base = static_cast<std::byte*>(::operator new(size, std::align_val_t(kHugePage)));
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
