// AVX-512 kernels (F/BW/VL/DQ, VNNI, VBMI). One 512-bit register holds one tile: 16 output channels.
// f32 and bf16 weights, GEMV path (PermuteFmaMicro): a 2:4 group of X (4 floats) is broadcast to every
// 128-bit lane, and vpermilps picks each channel's kept element with a control made from the packed nibbles
// by one variable shift, so no gathers. GEMM path: the panel GEMM of spmm24_panel.h (see Avx512Vec). i8
// weights (ShuffleDotMicro): two groups of X (8 bytes) are broadcast, vpshufb picks each channel's four
// kept bytes, and vpdpbusd multiplies them by the channel's four kept values (X is made unsigned by +128;
// the packed row sums undo that).
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/spmm24_driver.h"
#include "kernels/cpu/spmm24_panel.h"

namespace sparse24::cpu {
namespace {

// The epilogue's ReLU or ReLU6 on a vector of sums (GELU runs on the stored row instead: gelu_row).
inline __m512 clamp_act(__m512 y, Activation act) {
  // maxps / minps return their second operand where either is NaN: a NaN sum stays NaN, as in the ops.
  if (act == Activation::relu || act == Activation::relu6) y = _mm512_max_ps(_mm512_setzero_ps(), y);
  if (act == Activation::relu6) y = _mm512_min_ps(_mm512_set1_ps(6.0f), y);
  return y;
}

inline __m512 load_values(const float* p) {
  return _mm512_load_ps(p);
}
inline __m512 load_values(const uint16_t* p) {
  // bf16 -> f32 is a 16-bit shift up: exact.
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// Tiles (an even number, for the two-tile micro-kernels) whose weights for `kc` K steps take about 512 KiB,
// so they stay in L2 while every row block of X passes over them.
int64_t tiles_fitting_l2(const Packed24& W, int64_t kc) {
  const int64_t bytes_per_tile = W.stream_bytes() / W.tiles * std::min(kc, W.steps) / W.steps;
  return std::max<int64_t>(2, (512 << 10) / std::max<int64_t>(1, bytes_per_tile) / 2 * 2);
}

// Ordered: one sum per output, its K groups in order (as the panel GEMM sums them), for panel_gemm's tail.
template <typename VT, int MR, int NV, bool Ordered = false>
struct PermuteFmaMicro {
  static void run(const Spmm24Args& a, int64_t m0, int64_t tile, int64_t s0, int64_t s1, bool first,
                  bool last) {
    const Packed24& W = *a.W;
    const float* X = static_cast<const float*>(a.X) + m0 * a.ldx;
    float* Y = a.Y + m0 * a.ldy + tile * kTileRows;
    __mmask16 mask[NV];
    const VT* vals[NV];
    const uint64_t* meta[NV];
    for (int v = 0; v < NV; ++v) {
      mask[v] = __mmask16(valid_lanes(W, tile + v));
      vals[v] = W.tile_values<VT>(tile + v) + s0 * 2 * kTileRows;
      meta[v] = reinterpret_cast<const uint64_t*>(W.tile_meta(tile + v)) + s0;
    }
    // With few rows and tiles, the two kept values of a group go to separate sums (added at the end): one
    // chain of two dependent FMAs per group would otherwise bound the loop by FMA latency when the weights
    // come from cache.
    constexpr bool kSplit = !Ordered && MR * NV <= 4;
    __m512 acc[MR][NV], acc1[MR][NV];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v) {
        acc[m][v] =
            first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[v], Y + m * a.ldy + v * kTileRows);
        acc1[m][v] = _mm512_setzero_ps();
      }
    // Lane i's nibble sits at bit 4*(i/2) of its dword after the 64-bit broadcast (see packed24.h).
    const __m512i shift0 = _mm512_set_epi32(28, 28, 24, 24, 20, 20, 16, 16, 12, 12, 8, 8, 4, 4, 0, 0);
    const __m512i shift1 = _mm512_add_epi32(shift0, _mm512_set1_epi32(2));
    const float* xg = X + 4 * s0;
    const int64_t pf = gemv_prefetch_steps<NV, MR>(sizeof(VT), W.steps);
    for (int64_t s = 0; s < s1 - s0; ++s, xg += 4) {
      __m512i ctrl0[NV], ctrl1[NV];
      __m512 w0[NV], w1[NV];
      for (int v = 0; v < NV; ++v) {
        // Streaming weights: ask for them well ahead, the hardware prefetcher alone falls behind here.
        _mm_prefetch(reinterpret_cast<const char*>(vals[v] + (s + pf) * 2 * kTileRows), _MM_HINT_T0);
        if (sizeof(VT) == 4)
          _mm_prefetch(reinterpret_cast<const char*>(vals[v] + (s + pf) * 2 * kTileRows + kTileRows),
                       _MM_HINT_T0);
        if (s % 8 == 0) _mm_prefetch(reinterpret_cast<const char*>(meta[v] + s + pf), _MM_HINT_T0);
        const __m512i bits = _mm512_set1_epi64(int64_t(meta[v][s]));
        ctrl0[v] = _mm512_srlv_epi32(bits, shift0);
        ctrl1[v] = _mm512_srlv_epi32(bits, shift1);
        w0[v] = load_values(vals[v] + s * 2 * kTileRows);
        w1[v] = load_values(vals[v] + s * 2 * kTileRows + kTileRows);
      }
      for (int m = 0; m < MR; ++m) {
        const __m512 x = _mm512_broadcast_f32x4(_mm_loadu_ps(xg + m * a.ldx));
        for (int v = 0; v < NV; ++v) {
          acc[m][v] = _mm512_fmadd_ps(_mm512_permutevar_ps(x, ctrl0[v]), w0[v], acc[m][v]);
          // Two statements, not a reference to either sum: a reference chosen by a condition kept every sum
          // in memory (GCC 12), so each FMA waited on a store and a reload (f32 768x768, M = 8: 0.056 ms).
          if constexpr (kSplit)
            acc1[m][v] = _mm512_fmadd_ps(_mm512_permutevar_ps(x, ctrl1[v]), w1[v], acc1[m][v]);
          else
            acc[m][v] = _mm512_fmadd_ps(_mm512_permutevar_ps(x, ctrl1[v]), w1[v], acc[m][v]);
        }
      }
    }
    for (int v = 0; v < NV; ++v) {
      const __m512 bias = last && a.bias ? _mm512_maskz_loadu_ps(mask[v], a.bias + (tile + v) * kTileRows)
                                         : _mm512_setzero_ps();
      for (int m = 0; m < MR; ++m) {
        __m512 y = kSplit ? _mm512_add_ps(acc[m][v], acc1[m][v]) : acc[m][v];
        if (last && a.bias) y = _mm512_add_ps(y, bias);
        if (last) y = clamp_act(y, a.act);
        float* out = Y + m * a.ldy + v * kTileRows;
        _mm512_mask_storeu_ps(out, mask[v], y);
        if (last && a.act == Activation::gelu) gelu_row(out, mask[v]);
      }
    }
  }
};

template <int MR, int NV>
using F32W = PermuteFmaMicro<float, MR, NV>;
template <int MR, int NV>
using BF16W = PermuteFmaMicro<uint16_t, MR, NV>;

// panel_gemm's tail: up to 8 rows (half the shortest panel), one ordered sum per output.
template <int MR, int NV>
using F32Ordered = PermuteFmaMicro<float, MR, NV, true>;
template <int MR, int NV>
using BF16Ordered = PermuteFmaMicro<uint16_t, MR, NV, true>;
constexpr int kTailRows = 8;

template <int MR, int NV>
struct ShuffleDotMicro {
  static void run(const Spmm24Args& a, int64_t m0, int64_t tile, int64_t s0, int64_t s1, bool first,
                  bool last) {
    const Packed24& W = *a.W;
    const int8_t* X = static_cast<const int8_t*>(a.X) + m0 * a.ldx;
    float* Y = a.Y + m0 * a.ldy + tile * kTileRows;
    // K = 4 (mod 8): the last pair's second group is padding, and X ends after its first group.
    const bool half_last_pair = (W.cols / 4) % 2 == 1;
    __mmask16 mask[NV];
    const int8_t* vals[NV];
    const uint8_t* meta[NV];
    for (int v = 0; v < NV; ++v) {
      mask[v] = __mmask16(valid_lanes(W, tile + v));
      vals[v] = W.tile_values<int8_t>(tile + v) + s0 * 64;
      meta[v] = W.tile_meta(tile + v) + s0 * 16;
    }
    __m512i acc[MR][NV];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_si512();
    // vpmultishiftqb pulls the 2-bit indices of each lane's meta byte into the lane's four control bytes.
    const __m512i pick = _mm512_set1_epi64(0x2624222006040200ll);
    const __m512i low2 = _mm512_set1_epi32(0x03030303);
    const __m512i second_group = _mm512_set1_epi32(0x04040000);
    const __m512i to_unsigned = _mm512_set1_epi8(int8_t(0x80));
    // From three rows on (two tiles at a time) as the permute GEMV: 128 pairs of groups ahead where a tile
    // has fewer than 128 (K < 1024), else 32 (one thread, weights from memory, ms at 32 / 128 pairs: 768x768
    // M = 4 0.0147 / 0.0114, M = 8 0.0162 / 0.0131; 3072x768 M = 8 0.068 / 0.044; 1536x384 M = 4 0.018 /
    // 0.012; M = 64 and 256 0-6% faster; K = 1024 and longer unchanged).
    const int64_t pf = gemv_prefetch_steps<NV, MR>(1, W.steps);
    for (int64_t s = 0; s < s1 - s0; ++s) {
      __m512i ctrl[NV], w[NV];
      for (int v = 0; v < NV; ++v) {
        _mm_prefetch(reinterpret_cast<const char*>(vals[v] + (s + pf) * 64), _MM_HINT_T0);
        if (s % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(meta[v] + (s + pf) * 16), _MM_HINT_T0);
        const __m512i bytes =
            _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(meta[v] + s * 16)));
        // (picked & 3) | second_group: ternary-logic truth table 0xEA.
        ctrl[v] =
            _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(pick, bytes), low2, second_group, 0xEA);
        w[v] = _mm512_load_si512(vals[v] + s * 64);
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
        const __m512i x = _mm512_xor_si512(_mm512_set1_epi64(x8), to_unsigned);
        for (int v = 0; v < NV; ++v)
          acc[m][v] = _mm512_dpbusd_epi32(acc[m][v], _mm512_shuffle_epi8(x, ctrl[v]), w[v]);
      }
    }
    for (int v = 0; v < NV; ++v) {
      const int64_t n0 = (tile + v) * kTileRows;
      const __m512i correction = _mm512_slli_epi32(_mm512_loadu_si512(W.row_sums.data() + n0), 7);
      const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(a.x_scale), _mm512_loadu_ps(W.scales.data() + n0));
      const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mask[v], a.bias + n0) : _mm512_setzero_ps();
      for (int m = 0; m < MR; ++m) {
        __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[m][v], correction)), scale);
        if (a.bias) y = _mm512_add_ps(y, bias);
        y = clamp_act(y, a.act);
        float* out = Y + m * a.ldy + v * kTileRows;
        _mm512_mask_storeu_ps(out, mask[v], y);
        if (a.act == Activation::gelu) gelu_row(out, mask[v]);
      }
    }
  }
};

// The GEMM path for larger M: the panel GEMM of spmm24_panel.h, 16 rows per register. A 64-row panel
// takes four registers per k and four channels per micro-kernel; a last panel of at most 32 rows (and so
// every M <= 32) runs as a 32-row panel: two registers per k, eight channels per micro-kernel, half the
// padding. (The GEMV path needs a permute per kept weight and row, and the shuffle port then limits it.)

// Within each 128-bit lane, a 4x4 transpose of four registers: out[q] lane L = (a0, a1, a2, a3)[4L + q].
inline void transpose_4x4_lanes(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 out[4]) {
  const __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(a0, a1)),
                t1 = _mm512_castps_pd(_mm512_unpackhi_ps(a0, a1));
  const __m512d t2 = _mm512_castps_pd(_mm512_unpacklo_ps(a2, a3)),
                t3 = _mm512_castps_pd(_mm512_unpackhi_ps(a2, a3));
  out[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
  out[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
  out[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
  out[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
}

// out[i] lane c = in[c] lane i: a 16x16 transpose in registers (4x4 within lanes, then across lanes).
inline void transpose_16x16(const __m512 in[16], __m512 out[16]) {
  __m512 b[16];  // b[4q + j] lane L: element 4L + j of in[4q..4q+3]
  for (int q = 0; q < 4; ++q)
    transpose_4x4_lanes(in[4 * q], in[4 * q + 1], in[4 * q + 2], in[4 * q + 3], b + 4 * q);
  for (int j = 0; j < 4; ++j) {
    const __m512 u0 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x44),
                 u1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xEE);
    const __m512 u2 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x44),
                 u3 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xEE);
    out[j] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    out[4 + j] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    out[8 + j] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    out[12 + j] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
}

// Xt[k][i] = row[i][k] (Xt rows ld floats apart) for k < K and the panel's n rows (n <= ld).
void pack_rows_16(const float* const* row, int64_t n, int64_t K, float* xt, int64_t ld) {
  int64_t i = 0;
  // 16 rows x 16 k at a time: one transpose, 16 aligned 64-byte stores into Xt.
  for (; i + 16 <= n; i += 16) {
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      __m512 in[16], out[16];
      for (int r = 0; r < 16; ++r) in[r] = _mm512_loadu_ps(row[i + r] + k);
      transpose_16x16(in, out);
      for (int j = 0; j < 16; ++j) _mm512_store_ps(xt + (k + j) * ld + i, out[j]);
    }
    for (; k < K; ++k)
      for (int r = 0; r < 16; ++r) xt[k * ld + i + r] = row[i + r][k];
  }
  for (; i + 4 <= n; i += 4) {
    const float *r0 = row[i], *r1 = row[i + 1], *r2 = row[i + 2], *r3 = row[i + 3];
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      __m512 u[4];
      transpose_4x4_lanes(_mm512_loadu_ps(r0 + k), _mm512_loadu_ps(r1 + k), _mm512_loadu_ps(r2 + k),
                          _mm512_loadu_ps(r3 + k), u);
      for (int q = 0; q < 4; ++q) {
        _mm_store_ps(xt + (k + q) * ld + i, _mm512_extractf32x4_ps(u[q], 0));
        _mm_store_ps(xt + (k + 4 + q) * ld + i, _mm512_extractf32x4_ps(u[q], 1));
        _mm_store_ps(xt + (k + 8 + q) * ld + i, _mm512_extractf32x4_ps(u[q], 2));
        _mm_store_ps(xt + (k + 12 + q) * ld + i, _mm512_extractf32x4_ps(u[q], 3));
      }
    }
    for (; k < K; ++k)
      for (int r = 0; r < 4; ++r) xt[k * ld + i + r] = row[i + r][k];
  }
  for (; i < n; ++i)
    for (int64_t k = 0; k < K; ++k) xt[k * ld + i] = row[i][k];
}

// The kept values of NR (4 or 8) consecutive channels as f32 in the low lanes (bf16 widened exactly by a
// 16-bit shift).
template <int NR>
inline __m512 load_kept(const float* p) {
  if constexpr (NR == 4) return _mm512_castps128_ps512(_mm_loadu_ps(p));
  return _mm512_castps256_ps512(_mm256_loadu_ps(p));
}
template <int NR>
inline __m512 load_kept(const uint16_t* p) {
  if constexpr (NR == 4)
    return _mm512_castps128_ps512(_mm_castsi128_ps(
        _mm_slli_epi32(_mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), 16)));
  return _mm512_castps256_ps512(_mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16)));
}

// Writes rows m0..m0+rows-1 (at most 16) of one finished tile: block[c * ld + i] holds channel c, row i.
// The 16x16 block is transposed in registers, so each row of Y gets one 64-byte store, bias and activation.
void store_tile_block(const Spmm24Args& a, int64_t m0, int64_t rows, int64_t tile, const float* block,
                      int64_t ld) {
  const __mmask16 nmask = __mmask16(valid_lanes(*a.W, tile));
  const int64_t n0 = tile * kTileRows;
  const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(nmask, a.bias + n0) : _mm512_setzero_ps();
  __m512 in[16], z[16];  // in[c]: channel c over the 16 rows; z[i]: row i over the 16 channels
  for (int c = 0; c < 16; ++c) in[c] = _mm512_load_ps(block + c * ld);
  transpose_16x16(in, z);
  // A pool with pool_ld 0: one image's rows summed here, then added into its pool row at once.
  __m512 image_sum = _mm512_setzero_ps();
  int64_t image_rows = 0;
  float* image_pool = a.pool && a.pool_ld == 0 ? pool_image(a, m0, image_rows) : nullptr;
  for (int64_t i = 0; i < rows; ++i) {
    __m512 y = z[i];
    if (a.bias) y = _mm512_add_ps(y, bias);
    y = clamp_act(y, a.act);
    if (a.residual) {
      y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(nmask, a.residual + (m0 + i) * a.ldy + n0));
      if (a.residual_relu) y = _mm512_max_ps(_mm512_setzero_ps(), y);
    }
    if (image_pool) {
      image_sum = _mm512_add_ps(image_sum, y);
      if (--image_rows > 0 && i + 1 < rows) continue;
      float* sum = image_pool + n0;
      _mm512_mask_storeu_ps(sum, nmask, _mm512_add_ps(_mm512_maskz_loadu_ps(nmask, sum), image_sum));
      image_sum = _mm512_setzero_ps();
      if (i + 1 < rows) image_pool = pool_image(a, m0 + i + 1, image_rows);
      continue;
    }
    if (a.pool) {  // summed into the image's pool row instead (image blocks)
      float* sum = a.pool + (m0 + i) * a.pool_ld + n0;
      _mm512_mask_storeu_ps(sum, nmask, _mm512_add_ps(_mm512_maskz_loadu_ps(nmask, sum), y));
      continue;
    }
    float* out = a.Y + (m0 + i) * a.ldy + n0;
    if (nmask == 0xffff)
      _mm512_storeu_ps(out, y);
    else
      _mm512_mask_storeu_ps(out, nmask, y);
    if (a.act == Activation::gelu) gelu_row(out, nmask);
  }
}

// The panel GEMM's vector operations on AVX-512 (spmm24_panel.h): 16 rows per register, 16 sums per
// micro-kernel (a 64-row panel: four channels of four registers; the 32-row one: eight of two; the 16-row
// one below: eight of one).
struct Avx512Vec {
  using reg = __m512;
  static constexpr int lanes = 16, sums = 16;
  // Three groups ahead rather than two: f32, one thread, 5 alternating runs, M = 128 768x768 0.397 -> 0.392
  // ms, M = 512 384x384 0.417 -> 0.407, 128x4096x4096 11.66 -> 11.51, M = 32 768x768 0.0989 -> 0.0965; the
  // CNN's 3x3 convolution, 98 rows, 8 runs: 0.0221 -> 0.0217 (four ahead the same).
  static constexpr int meta_ahead = 3;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_load_ps(p); }
  static reg load_lanes(const float* p, uint32_t lanes) { return _mm512_maskz_loadu_ps(__mmask16(lanes), p); }
  static void store(float* p, reg v) { _mm512_store_ps(p, v); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  template <int NR, typename VT>
  static reg kept(const VT* p) {
    return load_kept<NR>(p);
  }
  template <int NR, typename VT>
  static reg broadcast(reg kept, const VT*, int r) {
    return _mm512_permutexvar_ps(_mm512_set1_epi32(r), kept);
  }
  static void pack_rows(const float* const* row, int64_t n, int64_t K, float* xt, int64_t ld) {
    pack_rows_16(row, n, K, xt, ld);
  }
  static void store_block(const Spmm24Args& a, int64_t m0, int64_t n, int64_t tile, const float* block,
                          int64_t ld) {
    store_tile_block(a, m0, n, tile, block, ld);
  }
};
template <int PV>
using Avx512Panel = Panel<Avx512Vec, PV>;
// The 16-row panel (one register per k) with 8 channels per micro-kernel: with all 16 channels the 16
// broadcast controls, 16 sums and the kept values did not fit in the 32 registers (f32 3072x768, one
// thread, M = 80 / 112 / 196 with a 16-row last panel: 1.15-1.20 / 1.57-1.61 / 2.76-2.79 ms with 16
// channels, 1.11 / 1.51-1.53 / 2.72 with 8).
struct Avx512Vec8Sums : Avx512Vec {
  static constexpr int sums = 8;
};
using Avx512TinyPanel = Panel<Avx512Vec8Sums, 1>;

// The permute GEMV for f32 or bf16 values. One or two rows: one tile at a time up to LongSteps K steps per
// tile, LongNv tiles at a time above. Up to 8 rows every weight is still read once, so the one-tile choice
// holds there too (f32 768x768, M = 8: 1.80-1.87 against 1.70-2.03; 4096x4096: 1.71-1.75 against
// 2.17-2.30).
template <template <int, int> class Micro, int LongNv, int64_t LongSteps>
void permute_gemv(const Spmm24Args& a, int64_t tb, int64_t te) {
  const bool one_tile = one_tile_at_a_time(*a.W);
  if (a.M <= 2 && a.W->steps <= LongSteps) return drive<Micro, 2, 1>(a, tb, te, a.W->steps, te - tb);
  if (a.M <= 2) return drive<Micro, 2, LongNv>(a, tb, te, a.W->steps, te - tb);
  if (a.M <= 8 && one_tile)
    return drive<Micro, 8, 1>(a, tb, te, a.W->steps, tiles_fitting_l2(*a.W, a.W->steps));
  drive<Micro, 8, 2>(a, tb, te, a.W->steps, tiles_fitting_l2(*a.W, a.W->steps));
}

}  // namespace

// One or two rows, one tile at a time or several (permute_gemv), since the packed weights sit on huge pages;
// bench gemm in alternation, M = 1, ratio to oneDNN, one thread. f32, one tile / two: 4096x4096 1.88-1.93 /
// 1.76-1.85, 11008x4096 1.83 / 1.71-1.72, 768x3072 1.78-1.89 / 1.70 (two threads alike or better), so one
// at any K. bf16, one tile / four: 384x1536 1.82-1.94 / 1.49-1.65, 768x3072 1.50-1.65 / 1.46-1.51,
// 4096x4096 1.49-1.65 / 1.54-1.63, 4096x11008 1.59-1.60 / 1.67-1.76, so one up to K = 4096. On AVX2 two
// tiles stay faster for f32 (spmm24_avx2.cc).
void f32_spmm_24_gemv_avx512(const Spmm24Args& a, int64_t tb, int64_t te) {
  permute_gemv<F32W, 1, INT64_MAX>(a, tb, te);
}
static_assert(kTailRows == Avx512TinyPanel::rows / 2,
              "panel_gemm hands its tail rows up to half the shortest panel");
void f32_spmm_24_gemm_avx512(const Spmm24Args& a, int64_t tb, int64_t te) {
  panel_gemm<Avx512Panel<4>, Avx512Panel<2>, Avx512TinyPanel, float>(a, tb, te,
                                                                     &ordered_gemv<F32Ordered, kTailRows, 4>);
}
void bf16w_spmm_24_gemv_avx512(const Spmm24Args& a, int64_t tb, int64_t te) {
  permute_gemv<BF16W, 4, 1024>(a, tb, te);
}
void bf16w_spmm_24_gemm_avx512(const Spmm24Args& a, int64_t tb, int64_t te) {
  panel_gemm<Avx512Panel<4>, Avx512Panel<2>, Avx512TinyPanel, uint16_t>(
      a, tb, te, &ordered_gemv<BF16Ordered, kTailRows, 4>);
}
// i8 sums stay in registers over all of K (an i32 partial cannot wait in the f32 output).
// With one or two rows, one tile at a time at any K: with the long prefetch of a single stream
// (prefetch_steps) that beats four tiles at once (M = 1, 1 thread: 768x3072 0.050 -> 0.038-0.041 ms,
// 4096x4096 0.341-0.358 -> 0.276-0.293, 4096x11008 0.837-0.871 -> 0.772-0.788; 2 threads 4096x4096
// 0.263 -> 0.196).
void i8_spmm_24_gemv_avx512vnni(const Spmm24Args& a, int64_t tb, int64_t te) {
  if (a.M <= 2) return drive<ShuffleDotMicro, 2, 1>(a, tb, te, a.W->steps, te - tb);
  drive<ShuffleDotMicro, 8, 2>(a, tb, te, a.W->steps, tiles_fitting_l2(*a.W, a.W->steps));
}
void i8_spmm_24_gemm_avx512vnni(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<ShuffleDotMicro, 8, 2>(a, tb, te, a.W->steps, tiles_fitting_l2(*a.W, a.W->steps));
}

}  // namespace sparse24::cpu
