// The portable fallback kernels: plain loops over the Packed24 layout, for CPUs without AVX2 and as the
// registry's baseline. Built with -ffp-contract=off so sums round like the reference's.
#include <cstring>

#include "kernels/cpu/spmm24.h"

namespace sparse24::cpu {

namespace {

float widen(float v) {
  return v;
}
float widen(uint16_t bf16) {
  return bf16_to_f32(bf16);
}

template <typename VT>
void f32_activations(const Spmm24Args& a, int64_t tile_begin, int64_t tile_end) {
  const Packed24& W = *a.W;
  const float* X = static_cast<const float*>(a.X);
  for (int64_t t = tile_begin; t < tile_end; ++t) {
    const VT* vals = W.tile_values<VT>(t);
    const uint8_t* meta = W.tile_meta(t);
    for (int64_t lane = 0; lane < kTileRows && t * kTileRows + lane < W.rows; ++lane) {
      const int64_t n = t * kTileRows + lane;
      const int shift = int(32 * (lane % 2) + 4 * (lane / 2));
      for (int64_t m = 0; m < a.M; ++m) {
        const float* x = X + m * a.ldx;
        float acc = 0.0f;
        for (int64_t g = 0; g < W.steps; ++g) {
          uint64_t bits;
          std::memcpy(&bits, meta + g * 8, 8);
          const unsigned nib = unsigned(bits >> shift) & 0xf;
          acc += x[4 * g + (nib & 3)] * widen(vals[(g * 2 + 0) * kTileRows + lane]);
          acc += x[4 * g + (nib >> 2)] * widen(vals[(g * 2 + 1) * kTileRows + lane]);
        }
        if (a.bias) acc += a.bias[n];
        a.Y[m * a.ldy + n] = a.act == Activation::gelu ? gelu_erf(acc) : reference::activate(acc, a.act);
      }
    }
  }
}

}  // namespace

void f32_spmm_24_ref(const Spmm24Args& a, int64_t tile_begin, int64_t tile_end) {
  f32_activations<float>(a, tile_begin, tile_end);
}

void bf16w_spmm_24_ref(const Spmm24Args& a, int64_t tile_begin, int64_t tile_end) {
  f32_activations<uint16_t>(a, tile_begin, tile_end);
}

void i8_spmm_24_ref(const Spmm24Args& a, int64_t tile_begin, int64_t tile_end) {
  const Packed24& W = *a.W;
  const int8_t* X = static_cast<const int8_t*>(a.X);
  const int64_t G = W.cols / 4;
  for (int64_t t = tile_begin; t < tile_end; ++t) {
    const int8_t* vals = W.tile_values<int8_t>(t);
    const uint8_t* meta = W.tile_meta(t);
    for (int64_t lane = 0; lane < kTileRows && t * kTileRows + lane < W.rows; ++lane) {
      const int64_t n = t * kTileRows + lane;
      const float scale = a.x_scale * W.scales[size_t(n)];
      for (int64_t m = 0; m < a.M; ++m) {
        const int8_t* x = X + m * a.ldx;
        int32_t acc = 0;
        for (int64_t g = 0; g < G; ++g) {
          const int64_t step = (g / 2) * kTileRows + lane, half = g % 2;
          const unsigned nib = unsigned(meta[step] >> (4 * half)) & 0xf;
          acc += int32_t(x[4 * g + (nib & 3)]) * vals[step * 4 + half * 2];
          acc += int32_t(x[4 * g + (nib >> 2)]) * vals[step * 4 + half * 2 + 1];
        }
        float y = float(acc) * scale;
        if (a.bias) y += a.bias[n];
        a.Y[m * a.ldy + n] = a.act == Activation::gelu ? gelu_erf(y) : reference::activate(y, a.act);
      }
    }
  }
}

}  // namespace sparse24::cpu
