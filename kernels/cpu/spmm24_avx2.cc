// AVX2 + FMA kernels. A tile of 16 output channels is two 256-bit halves. f32 and bf16 weights, GEMV path:
// as on AVX-512, a group of X is broadcast to both 128-bit lanes and vpermilps picks each channel's kept
// element with a control made from the packed nibbles by one variable shift. GEMM path: the panel GEMM of
// spmm24_panel.h with 8 rows per register (see Avx2Vec). i8 weights: vpshufb picks each channel's four
// kept bytes of X; without VNNI they are sign-extended to 16 bits and multiplied by vpmaddwd, which cannot
// saturate (vpmaddubsw could).
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/spmm24_driver.h"
#include "kernels/cpu/spmm24_panel.h"

namespace sparse24::cpu {
namespace {

// The epilogue's ReLU or ReLU6 on a vector of sums (GELU runs on the stored row instead: gelu_row).
inline __m256 clamp_act(__m256 y, Activation act) {
  // maxps / minps return their second operand where either is NaN: a NaN sum stays NaN, as in the ops.
  if (act == Activation::relu || act == Activation::relu6) y = _mm256_max_ps(_mm256_setzero_ps(), y);
  if (act == Activation::relu6) y = _mm256_min_ps(_mm256_set1_ps(6.0f), y);
  return y;
}

inline __m256 load_values(const float* p) {
  return _mm256_load_ps(p);
}
inline __m256 load_values(const uint16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

// Lanes 0..7 of a half hold channels 8h..8h+7; after the 64-bit broadcast the nibble of channel c sits at
// bit 4*(c/2) of its dword.
inline __m256i nibble_shift(int half, int j) {
  const int b = 16 * half + 2 * j;
  return _mm256_setr_epi32(b, b, b + 4, b + 4, b + 8, b + 8, b + 12, b + 12);
}

inline __m256i half_mask(uint32_t lanes, int half) {
  const uint32_t bits = (lanes >> (8 * half)) & 0xff;
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(int(bits)), lane_bit), lane_bit);
}

// Ordered: one sum per output, its K groups in order (as the panel GEMM sums them), for panel_gemm's tail.
template <typename VT, int MR, int NV, bool Ordered = false>
struct PermuteFmaMicro {
  static void run(const Spmm24Args& a, int64_t m0, int64_t tile, int64_t s0, int64_t s1, bool first,
                  bool last) {
    const Packed24& W = *a.W;
    const float* X = static_cast<const float*>(a.X) + m0 * a.ldx;
    float* Y = a.Y + m0 * a.ldy + tile * kTileRows;
    __m256i mask[NV][2];
    uint32_t lanes[NV];
    const VT* vals[NV];
    const uint64_t* meta[NV];
    for (int v = 0; v < NV; ++v) {
      lanes[v] = valid_lanes(W, tile + v);
      for (int h = 0; h < 2; ++h) mask[v][h] = half_mask(lanes[v], h);
      vals[v] = W.tile_values<VT>(tile + v) + s0 * 2 * kTileRows;
      meta[v] = reinterpret_cast<const uint64_t*>(W.tile_meta(tile + v)) + s0;
    }
    // With few rows and tiles, the two kept values of a group go to separate sums (added at the end), as on
    // AVX-512: one chain of two dependent FMAs per group would otherwise bound the loop by FMA latency when
    // the weights come from cache (MLP 784-1024-1024-10 at batch 1, 2 threads: 0.062 -> 0.022 ms).
    constexpr bool kSplit = !Ordered && MR * NV <= 2;
    __m256 acc[MR][NV][2], acc1[MR][NV][2];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v)
        for (int h = 0; h < 2; ++h) {
          acc[m][v][h] = first ? _mm256_setzero_ps()
                               : _mm256_maskload_ps(Y + m * a.ldy + v * kTileRows + 8 * h, mask[v][h]);
          acc1[m][v][h] = _mm256_setzero_ps();
        }
    const float* xg = X + 4 * s0;
    const int64_t pf = gemv_prefetch_steps<NV, MR>(sizeof(VT), W.steps);
    for (int64_t s = 0; s < s1 - s0; ++s, xg += 4) {
      __m256i ctrl[NV][2][2];
      __m256 w[NV][2][2];
      for (int v = 0; v < NV; ++v) {
        // Streaming weights: ask for them well ahead, the hardware prefetcher alone falls behind here.
        for (size_t line = 0; line < 2 * kTileRows * sizeof(VT); line += 64)
          _mm_prefetch(reinterpret_cast<const char*>(vals[v] + (s + pf) * 2 * kTileRows) + line, _MM_HINT_T0);
        if (s % 8 == 0) _mm_prefetch(reinterpret_cast<const char*>(meta[v] + s + pf), _MM_HINT_T0);
        const __m256i bits = _mm256_set1_epi64x(int64_t(meta[v][s]));
        for (int j = 0; j < 2; ++j)
          for (int h = 0; h < 2; ++h) {
            ctrl[v][j][h] = _mm256_srlv_epi32(bits, nibble_shift(h, j));
            w[v][j][h] = load_values(vals[v] + s * 2 * kTileRows + j * kTileRows + 8 * h);
          }
      }
      for (int m = 0; m < MR; ++m) {
        const __m256 x = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(xg + m * a.ldx));
        for (int v = 0; v < NV; ++v)
          for (int j = 0; j < 2; ++j)
            for (int h = 0; h < 2; ++h) {
              // Two statements, not a reference to either sum (see the AVX-512 file: that kept the sums in
              // memory).
              const __m256 p = _mm256_permutevar_ps(x, ctrl[v][j][h]);
              if (kSplit && j == 1)
                acc1[m][v][h] = _mm256_fmadd_ps(p, w[v][j][h], acc1[m][v][h]);
              else
                acc[m][v][h] = _mm256_fmadd_ps(p, w[v][j][h], acc[m][v][h]);
            }
      }
    }
    for (int v = 0; v < NV; ++v)
      for (int h = 0; h < 2; ++h) {
        const __m256 bias = last && a.bias
                                ? _mm256_maskload_ps(a.bias + (tile + v) * kTileRows + 8 * h, mask[v][h])
                                : _mm256_setzero_ps();
        for (int m = 0; m < MR; ++m) {
          __m256 y = kSplit ? _mm256_add_ps(acc[m][v][h], acc1[m][v][h]) : acc[m][v][h];
          if (last && a.bias) y = _mm256_add_ps(y, bias);
          if (last) y = clamp_act(y, a.act);
          _mm256_maskstore_ps(Y + m * a.ldy + v * kTileRows + 8 * h, mask[v][h], y);
        }
      }
    if (last && a.act == Activation::gelu)
      for (int m = 0; m < MR; ++m)
        for (int v = 0; v < NV; ++v) gelu_row(Y + m * a.ldy + v * kTileRows, lanes[v]);
  }
};

template <int MR, int NV>
using F32W = PermuteFmaMicro<float, MR, NV>;
template <int MR, int NV>
using BF16W = PermuteFmaMicro<uint16_t, MR, NV>;

// panel_gemm's tail: up to 4 rows (half the shortest panel), one ordered sum per output.
template <int MR, int NV>
using F32Ordered = PermuteFmaMicro<float, MR, NV, true>;
template <int MR, int NV>
using BF16Ordered = PermuteFmaMicro<uint16_t, MR, NV, true>;
constexpr int kTailRows = 4;

template <int MR, int NV>
struct ShuffleDotMicro {
  static void run(const Spmm24Args& a, int64_t m0, int64_t tile, int64_t s0, int64_t s1, bool first,
                  bool last) {
    const Packed24& W = *a.W;
    const int8_t* X = static_cast<const int8_t*>(a.X) + m0 * a.ldx;
    float* Y = a.Y + m0 * a.ldy + tile * kTileRows;
    const bool half_last_pair = (W.cols / 4) % 2 == 1;
    __m256i mask[NV][2];
    uint32_t lanes[NV];
    const int8_t* vals[NV];
    const uint8_t* meta[NV];
    for (int v = 0; v < NV; ++v) {
      lanes[v] = valid_lanes(W, tile + v);
      for (int h = 0; h < 2; ++h) mask[v][h] = half_mask(lanes[v], h);
      vals[v] = W.tile_values<int8_t>(tile + v) + s0 * 64;
      meta[v] = W.tile_meta(tile + v) + s0 * 16;
    }
    __m256i acc[MR][NV][2];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v)
        for (int h = 0; h < 2; ++h) acc[m][v][h] = _mm256_setzero_si256();
    const __m256i low2 = _mm256_set1_epi32(0x03030303);
    const __m256i second_group = _mm256_set1_epi32(0x04040000);
    constexpr int64_t pf = prefetch_steps<NV>(1);
    for (int64_t s = 0; s < s1 - s0; ++s) {
      __m256i ctrl[NV][2], w_even[NV][2], w_odd[NV][2];
      for (int v = 0; v < NV; ++v) {
        _mm_prefetch(reinterpret_cast<const char*>(vals[v] + (s + pf) * 64), _MM_HINT_T0);
        if (s % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(meta[v] + (s + pf) * 16), _MM_HINT_T0);
      }
      for (int v = 0; v < NV; ++v)
        for (int h = 0; h < 2; ++h) {
          // Meta byte b = i0 | i1<<2 | i0'<<4 | i1'<<6 becomes control bytes i0, i1, 4+i0', 4+i1'.
          const __m256i b = _mm256_cvtepu8_epi32(
              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(meta[v] + s * 16 + 8 * h)));
          __m256i spread =
              _mm256_or_si256(_mm256_or_si256(b, _mm256_slli_epi32(b, 6)),
                              _mm256_or_si256(_mm256_slli_epi32(b, 12), _mm256_slli_epi32(b, 18)));
          ctrl[v][h] = _mm256_or_si256(_mm256_and_si256(spread, low2), second_group);
          const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(vals[v] + s * 64 + 32 * h));
          w_even[v][h] = _mm256_srai_epi16(_mm256_slli_epi16(wv, 8), 8);
          w_odd[v][h] = _mm256_srai_epi16(wv, 8);
        }
      const bool half = half_last_pair && s0 + s == W.steps - 1;
      for (int m = 0; m < MR; ++m) {
        const int8_t* xp = X + m * a.ldx + 8 * (s0 + s);
        int64_t x8 = 0;
        if (half) {
          int32_t x4;
          std::memcpy(&x4, xp, 4);
          x8 = uint32_t(x4);
        } else {
          std::memcpy(&x8, xp, 8);
        }
        const __m256i x = _mm256_set1_epi64x(x8);
        for (int v = 0; v < NV; ++v)
          for (int h = 0; h < 2; ++h) {
            const __m256i xs = _mm256_shuffle_epi8(x, ctrl[v][h]);
            const __m256i x_even = _mm256_srai_epi16(_mm256_slli_epi16(xs, 8), 8);
            const __m256i x_odd = _mm256_srai_epi16(xs, 8);
            acc[m][v][h] =
                _mm256_add_epi32(acc[m][v][h], _mm256_add_epi32(_mm256_madd_epi16(x_even, w_even[v][h]),
                                                                _mm256_madd_epi16(x_odd, w_odd[v][h])));
          }
      }
    }
    for (int v = 0; v < NV; ++v)
      for (int h = 0; h < 2; ++h) {
        const int64_t n0 = (tile + v) * kTileRows + 8 * h;
        const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(a.x_scale), _mm256_loadu_ps(W.scales.data() + n0));
        const __m256 bias = a.bias ? _mm256_maskload_ps(a.bias + n0, mask[v][h]) : _mm256_setzero_ps();
        for (int m = 0; m < MR; ++m) {
          __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[m][v][h]), scale);
          if (a.bias) y = _mm256_add_ps(y, bias);
          y = clamp_act(y, a.act);
          _mm256_maskstore_ps(Y + m * a.ldy + v * kTileRows + 8 * h, mask[v][h], y);
        }
      }
    if (a.act == Activation::gelu)
      for (int m = 0; m < MR; ++m)
        for (int v = 0; v < NV; ++v) gelu_row(Y + m * a.ldy + v * kTileRows, lanes[v]);
  }
};

// out[i] lane c = in[c] lane i: an 8x8 transpose in registers.
inline void transpose_8x8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int q = 0; q < 4; ++q) {
    t[2 * q] = _mm256_unpacklo_ps(r[2 * q], r[2 * q + 1]);
    t[2 * q + 1] = _mm256_unpackhi_ps(r[2 * q], r[2 * q + 1]);
  }
  // u[h + j] (h = 0 for rows 0-3, 4 for rows 4-7) holds columns j and j + 4 of those four rows.
  for (int h = 0; h < 8; h += 4) {
    u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
    u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
    u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

// Xt[k][i] = row[i][k] (Xt rows ld floats apart) for k < K and the panel's n rows (n <= ld).
void pack_rows_8(const float* const* row, int64_t n, int64_t K, float* xt, int64_t ld) {
  int64_t i = 0;
  // 8 rows x 8 k at a time: one transpose, 8 aligned 32-byte stores into Xt.
  for (; i + 8 <= n; i += 8) {
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      __m256 r[8];
      for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(row[i + q] + k);
      transpose_8x8(r);
      for (int j = 0; j < 8; ++j) _mm256_store_ps(xt + (k + j) * ld + i, r[j]);
    }
    for (; k < K; ++k)
      for (int q = 0; q < 8; ++q) xt[k * ld + i + q] = row[i + q][k];
  }
  for (; i < n; ++i)
    for (int64_t k = 0; k < K; ++k) xt[k * ld + i] = row[i][k];
}

// The kept values of four consecutive channels as f32 (bf16 widened exactly by a 16-bit shift).
inline __m128 load_kept4(const float* p) {
  return _mm_loadu_ps(p);
}
inline __m128 load_kept4(const uint16_t* p) {
  return _mm_castsi128_ps(
      _mm_slli_epi32(_mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), 16));
}
// One kept value broadcast to all lanes.
inline __m256 broadcast_kept(const float* p) {
  return _mm256_broadcast_ss(p);
}
inline __m256 broadcast_kept(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_set1_epi32(int(uint32_t(*p) << 16)));
}

// The panel GEMM's vector operations on AVX2 (spmm24_panel.h): 8 rows per register and 8 sums per
// micro-kernel, half of the 16 ymm registers. The 16-row panel (four channels of two registers) broadcasts
// each channel's kept value from one load of four by a register permute; the 8-row panel for a last panel
// of at most 8 rows (eight channels of one register) has no registers to spare for the permute controls and
// broadcasts from memory. (Inner loop alone on L1-resident data, Zen 5 with AVX2 only: 114 GFLOP/s, 85% of
// the FMA peak, for the 16-row panel; the permute GEMM it replaced reached 60% in the whole kernel.)
struct Avx2Vec {
  using reg = __m256;
  static constexpr int lanes = 8, sums = 8;
  // Two groups ahead: three measured 1-2% slower here (f32, one thread, M = 128 768x768 0.754 -> 0.763 ms).
  static constexpr int meta_ahead = 2;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_load_ps(p); }
  static reg load_lanes(const float* p, uint32_t lanes) { return _mm256_maskload_ps(p, half_mask(lanes, 0)); }
  static void store(float* p, reg v) { _mm256_store_ps(p, v); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  template <int NR, typename VT>
  static reg kept(const VT* p) {
    if constexpr (NR == 4) return _mm256_castps128_ps256(load_kept4(p));
    return _mm256_setzero_ps();  // the eight-channel micro-kernel broadcasts from memory
  }
  template <int NR, typename VT>
  static reg broadcast(reg kept, const VT* p, int r) {
    if constexpr (NR == 4) return _mm256_permutevar8x32_ps(kept, _mm256_set1_epi32(r));
    return broadcast_kept(p + r);
  }
  static void pack_rows(const float* const* row, int64_t n, int64_t K, float* xt, int64_t ld) {
    pack_rows_8(row, n, K, xt, ld);
  }
  // Rows m0..m0+n-1 (n <= 8) of one finished tile from block[c * ld + i], one 8x8 transpose per half.
  static void store_block(const Spmm24Args& a, int64_t m0, int64_t n, int64_t tile, const float* block,
                          int64_t ld) {
    const uint32_t lanes_valid = valid_lanes(*a.W, tile);
    const int64_t n0 = tile * kTileRows;
    for (int h = 0; h < 2; ++h) {
      const __m256i mask = half_mask(lanes_valid, h);
      const __m256 bias = a.bias ? _mm256_maskload_ps(a.bias + n0 + 8 * h, mask) : _mm256_setzero_ps();
      __m256 r[8];
      for (int c = 0; c < 8; ++c) r[c] = _mm256_load_ps(block + (8 * h + c) * ld);
      transpose_8x8(r);
      // A pool with pool_ld 0: one image's rows summed here, then added into its pool row at once.
      __m256 image_sum = _mm256_setzero_ps();
      int64_t image_rows = 0;
      float* image_pool = a.pool && a.pool_ld == 0 ? pool_image(a, m0, image_rows) : nullptr;
      for (int64_t i = 0; i < n; ++i) {
        __m256 y = r[i];
        if (a.bias) y = _mm256_add_ps(y, bias);
        y = clamp_act(y, a.act);
        if (a.residual) {
          y = _mm256_add_ps(y, _mm256_maskload_ps(a.residual + (m0 + i) * a.ldy + n0 + 8 * h, mask));
          if (a.residual_relu) y = _mm256_max_ps(_mm256_setzero_ps(), y);
        }
        if (image_pool) {
          image_sum = _mm256_add_ps(image_sum, y);
          if (--image_rows > 0 && i + 1 < n) continue;
          float* sum = image_pool + n0 + 8 * h;
          _mm256_maskstore_ps(sum, mask, _mm256_add_ps(_mm256_maskload_ps(sum, mask), image_sum));
          image_sum = _mm256_setzero_ps();
          if (i + 1 < n) image_pool = pool_image(a, m0 + i + 1, image_rows);
          continue;
        }
        if (a.pool) {  // summed into the image's pool row instead (image blocks)
          float* sum = a.pool + (m0 + i) * a.pool_ld + n0 + 8 * h;
          _mm256_maskstore_ps(sum, mask, _mm256_add_ps(_mm256_maskload_ps(sum, mask), y));
          continue;
        }
        _mm256_maskstore_ps(a.Y + (m0 + i) * a.ldy + n0 + 8 * h, mask, y);
      }
    }
    if (a.act == Activation::gelu)
      for (int64_t i = 0; i < n; ++i) gelu_row(a.Y + (m0 + i) * a.ldy + n0, lanes_valid);
  }
};
template <int PV>
using Avx2Panel = Panel<Avx2Vec, PV>;

int64_t tiles_fitting_l2(const Packed24& W, int64_t kc) {
  const int64_t bytes_per_tile = W.stream_bytes() / W.tiles * std::min(kc, W.steps) / W.steps;
  return std::max<int64_t>(2, (256 << 10) / std::max<int64_t>(1, bytes_per_tile));
}

// The permute GEMV, LongNv tiles at a time for one or two rows on long tiles (one_tile_at_a_time); else 4
// rows x 1 tile (8 accumulators of the 16 ymm registers) with the weights reloaded from L1, each L2 block of
// tiles kept for all the row blocks (one block of 4 rows takes the tiles in the same order either way;
// before, above 4 rows every 4 rows read the weights from memory
// again: f32 4096x4096, one thread, M = 5 / 8 / 12 2.15 / 2.36 / 3.52 -> 1.97 / 1.92 / 2.67 ms; 768x3072 M =
// 12 0.410 -> 0.382; weights in cache unchanged).
template <template <int, int> class Micro, int LongNv>
void permute_gemv(const Spmm24Args& a, int64_t tb, int64_t te) {
  if (a.M <= 2 && !one_tile_at_a_time(*a.W)) return drive<Micro, 2, LongNv>(a, tb, te, a.W->steps, te - tb);
  drive<Micro, 4, 1>(a, tb, te, a.W->steps, tiles_fitting_l2(*a.W, a.W->steps));
}

}  // namespace

void f32_spmm_24_gemv_avx2(const Spmm24Args& a, int64_t tb, int64_t te) {
  permute_gemv<F32W, 2>(a, tb, te);
}
static_assert(kTailRows == Avx2Panel<1>::rows / 2,
              "panel_gemm hands its tail rows up to half the shortest panel");
void f32_spmm_24_gemm_avx2(const Spmm24Args& a, int64_t tb, int64_t te) {
  panel_gemm<Avx2Panel<2>, Avx2Panel<1>, Avx2Panel<1>, float>(a, tb, te,
                                                              &ordered_gemv<F32Ordered, kTailRows, 2>);
}
void bf16w_spmm_24_gemv_avx2(const Spmm24Args& a, int64_t tb, int64_t te) {
  permute_gemv<BF16W, 4>(a, tb, te);
}
void bf16w_spmm_24_gemm_avx2(const Spmm24Args& a, int64_t tb, int64_t te) {
  panel_gemm<Avx2Panel<2>, Avx2Panel<1>, Avx2Panel<1>, uint16_t>(a, tb, te,
                                                                 &ordered_gemv<BF16Ordered, kTailRows, 2>);
}
void i8_spmm_24_gemv_avx2(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<ShuffleDotMicro, 4, 1>(a, tb, te, a.W->steps, te - tb);
}
void i8_spmm_24_gemm_avx2(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<ShuffleDotMicro, 4, 1>(a, tb, te, a.W->steps, tiles_fitting_l2(*a.W, a.W->steps));
}

}  // namespace sparse24::cpu
