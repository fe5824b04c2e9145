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

/// A GEMV over up to MaxMr rows, all of K per call: with a micro-kernel that keeps one ordered sum per
/// output, the panel GEMM's tail (TailFn, spmm24_panel.h). One ordered sum per output is one chain of
/// dependent FMAs as long as K / 2, so with five rows or more it takes one tile at a time, and with fewer
/// several tiles at once (up to FewRowsNv with one or two rows, half as many with three or four) to keep
/// enough chains in flight.
template <template <int, int> class Micro, int MaxMr, int FewRowsNv>
void ordered_gemv(const Spmm24Args& a, int64_t tb, int64_t te) {
  const int64_t steps = a.W->steps;
  if (a.M <= 2) return drive<Micro, 2, FewRowsNv>(a, tb, te, steps, te - tb);
  if (a.M <= 4)
    return drive<Micro, std::min(4, MaxMr), std::max(1, FewRowsNv / 2)>(a, tb, te, steps, te - tb);
  drive<Micro, MaxMr, 1>(a, tb, te, steps, te - tb);
}

/// K steps between a GEMV kernel's weight prefetch and its use: 32, or 128 for a single stream of 1- or
/// 2-byte values (one tile at a time). Measured on Zen 5, M = 1, 1 thread, ms at 32 / 64 / 128 steps.
/// AVX-512: bf16 768x768 0.025 / 0.021 / 0.019, 3072x768 0.100 / 0.085 / 0.073; int8 768x768 0.015 / 0.013
/// / 0.012-0.014, 3072x768 0.052 / 0.045 / 0.043-0.045; where four tiles stream at once 32 stays best
/// (bf16 4096x4096 0.53 / 0.61 / 0.65), and f32 stays at 32 either way (768x768 0.035-0.038 at each);
/// bf16 at M = 8, one tile at a time too, 0.94-1.00x oneDNN's bf16 at 32 steps, 0.99-1.03x at 128.
/// AVX2 at 32 / 128: bf16 768x768 0.029 / 0.019, 3072x768 0.102 / 0.086; int8 3072x768 0.070 / 0.056,
/// 4096x4096 (the AVX2 int8 GEMV takes one tile at any K) 0.440 / 0.388; f32 768x768 0.041 / 0.042.
inline constexpr int64_t kPrefetchSteps = 32;
template <int NV>
constexpr int64_t prefetch_steps(size_t value_bytes) {
  return NV == 1 && value_bytes <= 2 ? 4 * kPrefetchSteps : kPrefetchSteps;
}
/// The same for a permute GEMV over MR rows of `steps` K steps. From three rows on a step computes
/// long enough that 32 steps ahead leaves the weights' lines late; where the tiles are short (K <= 1024)
/// 128 steps ahead keeps them in time (f32, one thread, weights from memory, ms at 32 / 128 steps: M = 8
/// 768x768 0.049 / 0.039, 3072x768 0.195 / 0.155, 1536x384 0.045 / 0.040; M = 4 1536x384 0.030 / 0.022,
/// 3072x768 0.138 / 0.123). With long tiles it is slower (M = 4: 384x1536 0.030 / 0.036, 768x3072 0.144 /
/// 0.155, 4096x4096 0.95 / 1.12), and with one or two rows too (M = 1 768x768 0.027-0.030 / 0.030-0.031).
/// AVX2 alike (M = 4: 768x768 0.041 / 0.030-0.031, 3072x768 0.163 / 0.124; 768x3072 0.173 / 0.171).
/// Two tiles at a time (AVX-512 from M = 9) lie next to each other, and 128 steps ahead of the first lands
/// inside the second where a tile has 128 to 256 steps: there 32 steps are faster (AVX-512, one thread,
/// weights from memory, ms at 128 / 32 steps, M = 9 / 16 / 20: f32 768x768 0.071 / 0.089 / 0.109 against
/// 0.056 / 0.075 / 0.095, 3072x768 0.283 / 0.341 / 0.420 against 0.225 / 0.303 / 0.380, 512x512 and
/// 1024x1024 13-24% faster; bf16 768x768 0.053 / 0.080 / 0.099 against 0.046 / 0.071 / 0.089). Below 128
/// steps a tile ends before the prefetch and 128 steps ahead reaches the next tiles in time (f32 1536x384,
/// M = 9: 0.047 at 128 steps, 0.056 at 32; 384x384 0.012 against 0.015; 1024x256 0.022 against 0.029).
template <int NV, int MR>
constexpr int64_t gemv_prefetch_steps(size_t value_bytes, int64_t steps) {
  return MR >= 3 && (NV == 1 ? steps <= 256 : steps < 128) ? 4 * kPrefetchSteps
                                                           : prefetch_steps<NV>(value_bytes);
}

/// With one or two rows a GEMV kernel only streams weights. Where a tile's weights are short (K up to ~1K
/// f32) it takes one tile at a time: consecutive tiles are adjacent in memory, so values and metadata are
/// two long sequential streams. Where they are long, two (f32) or four (bf16) tiles at a time keep more
/// streams in flight; on AVX-512, int8 and f32 now stay at one tile at any K and bf16 up to K = 4096 (see
/// i8_spmm_24_gemv_avx512vnni and f32_spmm_24_gemv_avx512, measured with the packed weights on huge pages).
/// (Measured on Zen 5, M = 1, 1 thread. AVX-512, ratio to oneDNN: f32 1536x384 1.53-1.69 one tile, 1.35 four;
/// f32 768x3072 and 4096x4096 1.59-1.87 two tiles, 1.50-1.61 four, 1.37-1.52 eight, 1.46-1.62 one; bf16
/// there 1.44-1.59 two, 1.65-1.80 four; int8 1.21-1.46 two, 1.25-1.55 four. AVX2, f32 768x3072, 4096x4096,
/// 11008x4096: 0.165, 1.126, 3.101 ms one tile, 0.135, 0.930, 2.551 two, 0.148, 1.024, 2.792 four; bf16
/// 0.150, 1.090, 2.977 one, 0.108, 0.744, 1.962 two, 0.098, 0.682, 1.836 four.)
inline bool one_tile_at_a_time(const Packed24& W) {
  return W.steps <= 256;  // K <= 1024 (f32, bf16), K <= 2048 (i8: steps are pairs of groups)
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
