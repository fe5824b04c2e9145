#pragma once
// The instruction level: one mma.sp per operand type, as used by the sp24 kernels (sp24_gemm.cu) and by the
// hardware-layout probe (tests/cuda/test_mma_sp_layout.cu). CUDA only.
#include <cstdint>

namespace sparse24::cuda {

// `sel` is the sparsity selector: for 16-bit operands one 32-bit metadata register serves two 16-row halves,
// threads 0-1 of each quad supplying rows 0-15 (selector 0) and threads 2-3 rows 16-31 (selector 1) — the
// NVIDIA layout puts the words there. For i8 all four threads supply one half's metadata (selector 0 only).

struct OpF16 {
  using Acc = float;
  static constexpr bool kInt8 = false;
  template <int Sel>
  __device__ static void mma(float (&c)[4], const uint4& a, const uint32_t (&b)[4], uint32_t e) {
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, %13;\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e),
          "n"(Sel));
  }
};

struct OpBF16 {
  using Acc = float;
  static constexpr bool kInt8 = false;
  template <int Sel>
  __device__ static void mma(float (&c)[4], const uint4& a, const uint32_t (&b)[4], uint32_t e) {
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, %13;\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e),
          "n"(Sel));
  }
};

struct OpI8 {
  using Acc = int;
  static constexpr bool kInt8 = true;
  template <int Sel>
  __device__ static void mma(int (&c)[4], const uint4& a, const uint32_t (&b)[4], uint32_t e) {
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, %13;\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e),
          "n"(Sel));
  }
};

}  // namespace sparse24::cuda
