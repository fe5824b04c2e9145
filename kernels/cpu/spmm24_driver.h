#pragma once
// The loop nest the SIMD kernels share. Included by each ISA file, which compiles it with its own flags:
// the templates live in an unnamed namespace so every file keeps its own copy and the linker never swaps an
// AVX-512 instantiation into the AVX2 path.
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "kernels/cpu/spmm24.h"

namespace sparse24::cpu {
namespace {

/// A micro-kernel: rows [m0, m0+MR) of X against tiles [tile, tile+NV), K steps [s0, s1). `first` starts
/// the sums at zero (otherwise from the partial sums in Y), `last` applies the epilogue.
using MicroFn = void (*)(const Spmm24Args& a, int64_t m0, int64_t tile, int64_t s0, int64_t s1, bool first,
                         bool last);

template <template <int, int> class Micro, int MaxNv, int Mr, int... Nvs>
constexpr void fill_micro_row(std::array<MicroFn, MaxNv>& row, std::integer_sequence<int, Nvs...>) {
  ((row[Nvs] = &Micro<Mr, Nvs + 1>::run), ...);
}

template <template <int, int> class Micro, int MaxMr, int MaxNv, int... Mrs>
constexpr void fill_micro_table(std::array<std::array<MicroFn, MaxNv>, MaxMr>& t,
                                std::integer_sequence<int, Mrs...>) {
  (fill_micro_row<Micro, MaxNv, Mrs + 1>(t[Mrs], std::make_integer_sequence<int, MaxNv>{}), ...);
}

/// Function-pointer table [MR-1][NV-1] over one micro-kernel template.
template <template <int, int> class Micro, int MaxMr, int MaxNv>
constexpr auto micro_table() {
  std::array<std::array<MicroFn, MaxNv>, MaxMr> t{};
  fill_micro_table<Micro, MaxMr, MaxNv>(t, std::make_integer_sequence<int, MaxMr>{});
  return t;
}

/// Blocking: K in blocks of `kc` steps (so a block of X rows stays in L1), output tiles in blocks of `nc`
/// (so their weights for one K block stay in L2 while every row block of X passes over them), then rows of
/// X in blocks of MaxMr, then tiles NV at a time. Every output lane sees its K steps in the same order
/// whatever the blocking and the thread split, so results do not depend on them.
template <template <int, int> class Micro, int MaxMr, int MaxNv>
void drive(const Spmm24Args& a, int64_t tile_begin, int64_t tile_end, int64_t kc, int64_t nc) {
  static constexpr auto table = micro_table<Micro, MaxMr, MaxNv>();
  const int64_t steps = a.W->steps;
  kc = std::max<int64_t>(1, std::min(kc, steps));
  nc = std::max<int64_t>(1, nc);
  for (int64_t s0 = 0; s0 < steps; s0 += kc) {
    const int64_t s1 = std::min(steps, s0 + kc);
    for (int64_t nb = tile_begin; nb < tile_end; nb += nc) {
      const int64_t ne = std::min(tile_end, nb + nc);
      for (int64_t m0 = 0; m0 < a.M; m0 += MaxMr) {
        const int64_t mr = std::min<int64_t>(MaxMr, a.M - m0);
        for (int64_t t = nb; t < ne; t += MaxNv) {
          const int64_t nv = std::min<int64_t>(MaxNv, ne - t);
          table[mr - 1][nv - 1](a, m0, t, s0, s1, s0 == 0, s1 == steps);
        }
      }
    }
  }
}

/// Lanes of tile `tile` that hold real output channels, as a bit mask.
inline uint32_t valid_lanes(const Packed24& W, int64_t tile) {
  const int64_t rem = W.rows - tile * kTileRows;
  return rem >= kTileRows ? 0xffffu : (1u << rem) - 1u;
}

/// GELU over the valid lanes of one stored row of a tile (scalar: erf in double, as the reference).
inline void gelu_row(float* y, uint32_t lanes) {
  for (int i = 0; i < int(kTileRows); ++i)
    if (lanes >> i & 1) y[i] = gelu_erf(y[i]);
}

}  // namespace
}  // namespace sparse24::cpu
