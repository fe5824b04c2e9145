// AVX-512 kernels (F/BW/VL/DQ, VNNI, VBMI). One 512-bit register holds one tile: 16 output channels.
// f32 and bf16 weights: a 2:4 group of X (4 floats) is broadcast to every 128-bit lane, and vpermilps picks
// each channel's kept element with a control made from the packed nibbles by one variable shift, so no
// gathers. i8 weights: two groups of X (8 bytes) are broadcast, vpshufb picks each channel's four kept
// bytes, and vpdpbusd multiplies them by the channel's four kept values (X is made unsigned by +128; the
// packed row sums undo that).
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/spmm24_driver.h"

namespace sparse24::cpu {
namespace {

inline __m512 load_values(const float* p) { return _mm512_load_ps(p); }
inline __m512 load_values(const uint16_t* p) {
  // bf16 -> f32 is a 16-bit shift up: exact.
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

template <typename VT, int MR, int NV>
struct F32Micro {
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
    __m512 acc[MR][NV];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v)
        acc[m][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[v], Y + m * a.ldy + v * kTileRows);
    // Lane i's nibble sits at bit 4*(i/2) of its dword after the 64-bit broadcast (see packed24.h).
    const __m512i shift0 = _mm512_set_epi32(28, 28, 24, 24, 20, 20, 16, 16, 12, 12, 8, 8, 4, 4, 0, 0);
    const __m512i shift1 = _mm512_add_epi32(shift0, _mm512_set1_epi32(2));
    const float* xg = X + 4 * s0;
    for (int64_t s = 0; s < s1 - s0; ++s, xg += 4) {
      __m512i ctrl0[NV], ctrl1[NV];
      __m512 w0[NV], w1[NV];
      for (int v = 0; v < NV; ++v) {
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
          acc[m][v] = _mm512_fmadd_ps(_mm512_permutevar_ps(x, ctrl1[v]), w1[v], acc[m][v]);
        }
      }
    }
    for (int v = 0; v < NV; ++v) {
      const __m512 bias = last && a.bias ? _mm512_maskz_loadu_ps(mask[v], a.bias + (tile + v) * kTileRows)
                                         : _mm512_setzero_ps();
      for (int m = 0; m < MR; ++m) {
        __m512 y = acc[m][v];
        if (last && a.bias) y = _mm512_add_ps(y, bias);
        if (last && a.act == Activation::relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
        float* out = Y + m * a.ldy + v * kTileRows;
        _mm512_mask_storeu_ps(out, mask[v], y);
        if (last && a.act == Activation::gelu) gelu_row(out, mask[v]);
      }
    }
  }
};

template <int MR, int NV>
using F32W = F32Micro<float, MR, NV>;
template <int MR, int NV>
using BF16W = F32Micro<uint16_t, MR, NV>;

template <int MR, int NV>
struct I8Micro {
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
    for (int64_t s = 0; s < s1 - s0; ++s) {
      __m512i ctrl[NV], w[NV];
      for (int v = 0; v < NV; ++v) {
        const __m512i bytes =
            _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(meta[v] + s * 16)));
        // (picked & 3) | second_group: ternary-logic truth table 0xEA.
        ctrl[v] = _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(pick, bytes), low2, second_group, 0xEA);
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
        for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbusd_epi32(acc[m][v], _mm512_shuffle_epi8(x, ctrl[v]), w[v]);
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
        if (a.act == Activation::relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
        float* out = Y + m * a.ldy + v * kTileRows;
        _mm512_mask_storeu_ps(out, mask[v], y);
        if (a.act == Activation::gelu) gelu_row(out, mask[v]);
      }
    }
  }
};

// GEMM blocking: a K block of 192 steps keeps 8 rows of f32 X (24 KiB) in L1; a tile block whose weights
// for that K block take about 512 KiB stays in L2.
int64_t tiles_fitting_l2(const Packed24& W, int64_t kc) {
  const int64_t bytes_per_tile = W.stream_bytes() / W.tiles * std::min(kc, W.steps) / W.steps;
  return std::max<int64_t>(2, (512 << 10) / std::max<int64_t>(1, bytes_per_tile));
}

}  // namespace

void f32_spmm_24_gemv_avx512(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<F32W, 4, 2>(a, tb, te, a.W->steps, te - tb);
}
void f32_spmm_24_gemm_avx512(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<F32W, 8, 2>(a, tb, te, 192, tiles_fitting_l2(*a.W, 192));
}
void bf16w_spmm_24_gemv_avx512(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<BF16W, 4, 2>(a, tb, te, a.W->steps, te - tb);
}
void bf16w_spmm_24_gemm_avx512(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<BF16W, 8, 2>(a, tb, te, 192, tiles_fitting_l2(*a.W, 192));
}
// i8 sums stay in registers over all of K (an i32 partial cannot wait in the f32 output).
void i8_spmm_24_gemv_avx512vnni(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<I8Micro, 4, 2>(a, tb, te, a.W->steps, te - tb);
}
void i8_spmm_24_gemm_avx512vnni(const Spmm24Args& a, int64_t tb, int64_t te) {
  drive<I8Micro, 8, 2>(a, tb, te, a.W->steps, tiles_fitting_l2(*a.W, a.W->steps));
}

}  // namespace sparse24::cpu
