// The packed weights' memory (kernels/cpu/weight_memory.h): small blocks share huge-page chunks, large ones
// get their own, every block is 64-byte aligned and usable, and chunks go back when their blocks are freed.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/weight_memory.h"

namespace sparse24::cpu {
namespace {

constexpr size_t kMiB = size_t(1) << 20;

TEST(WeightMemory, small_blocks_share_a_chunk_and_free_it) {
  const size_t before = weight_memory_held();
  std::vector<std::byte*> blocks;
  for (size_t bytes : {size_t(1), size_t(100), 3 * kMiB / 2, size_t(4096), kMiB})
    blocks.push_back(static_cast<std::byte*>(weight_allocate(bytes)));
  // At most one new shared chunk (16 MiB) for all five.
  EXPECT_LE(weight_memory_held() - before, 16 * kMiB);
  for (size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(blocks[i]) % 64, 0u) << "block " << i;
    for (size_t j = 0; j < i; ++j) EXPECT_NE(blocks[i], blocks[j]);
  }
  std::memset(blocks[2], 0x5a, 3 * kMiB / 2);  // the whole block is usable
  std::memset(blocks[4], 0xa5, kMiB);
  EXPECT_EQ(blocks[2][3 * kMiB / 2 - 1], std::byte{0x5a});  // and the next block did not overwrite it
  weight_deallocate(blocks[0], 1);
  weight_deallocate(blocks[1], 100);
  weight_deallocate(blocks[2], 3 * kMiB / 2);
  weight_deallocate(blocks[3], 4096);
  weight_deallocate(blocks[4], kMiB);
  EXPECT_EQ(weight_memory_held(), before);
}

TEST(WeightMemory, a_large_block_gets_its_own_chunk) {
  const size_t before = weight_memory_held();
  auto* p = static_cast<std::byte*>(weight_allocate(9 * kMiB));
  EXPECT_EQ(weight_memory_held() - before, 10 * kMiB);  // rounded up to whole 2 MiB pages
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (2 * kMiB), 0u);
  std::memset(p, 1, 9 * kMiB);
  weight_deallocate(p, 9 * kMiB);
  EXPECT_EQ(weight_memory_held(), before);
}

TEST(WeightMemory, vectors_use_it) {
  const size_t before = weight_memory_held();
  {
    WeightBytes a(9 * kMiB, std::byte{7});
    WeightBytes b = a;  // a copy is a second block
    EXPECT_EQ(weight_memory_held() - before, 20 * kMiB);
    EXPECT_EQ(b[9 * kMiB - 1], std::byte{7});
  }
  EXPECT_EQ(weight_memory_held(), before);
}

// A chunk must be memory nobody has touched yet: the huge-page advice applies only to pages faulted in
// after it. glibc serves large blocks from heap memory already faulted in on 4 KiB pages once large blocks
// have been freed (its mmap threshold rises), so this churns the heap that way first and asks mincore()
// that no page of the new chunk is resident before the chunk is written.
TEST(WeightMemory, a_chunk_is_fresh_memory_even_after_the_heap_has_been_used) {
  for (size_t mib : {24, 20, 12}) {
    std::vector<std::byte> used(mib * kMiB, std::byte{1});
    EXPECT_EQ(used.back(), std::byte{1});
  }
  const size_t bytes = 9 * kMiB, page = size_t(sysconf(_SC_PAGESIZE));
  auto* p = static_cast<std::byte*>(weight_allocate(bytes));
  std::vector<unsigned char> resident((bytes + page - 1) / page);
  ASSERT_EQ(mincore(p, bytes, resident.data()), 0);
  size_t touched = 0;
  for (unsigned char r : resident) touched += r & 1;
  EXPECT_EQ(touched, 0u) << "pages of a new chunk were already in use";
  std::memset(p, 3, bytes);
  weight_deallocate(p, bytes);
}

}  // namespace
}  // namespace sparse24::cpu
