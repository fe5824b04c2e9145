#pragma once
// The direct convolution's loop nest, shared by the AVX2, AVX-512 and portable builds: each file includes it
// with its own vector type (V: lanes, load, broadcast, fma, max, min, add, relu, store of the first n lanes)
// and compiles it with its own flags, inside an unnamed namespace so the copies never mix at link time.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "engine/ops/conv_direct.h"

namespace sparse24::engine::ops {

/// One call's geometry and operands (conv_direct.h), for rows [row0, row1) of the output, a row being one
/// (image, pooled output row). The input is already zero-padded, so every tap of every window is in it.
struct DirectConvArgs {
  const float* x = nullptr;     ///< [N][Hp][Wp][C], the padded input
  const float* w = nullptr;     ///< [K][oc_pad]
  const float* bias = nullptr;  ///< [oc_pad]
  float* y = nullptr;           ///< [N][PH][PW][oc]
  int64_t Hp = 0, Wp = 0, C = 0, stride_h = 1, stride_w = 1;
  int64_t k = 0;                      ///< kernel positions x input channels
  const int64_t* k_offset = nullptr;  ///< [k]: floats from a window's first input to each (tap, channel)
  int64_t pool_h = 1, pool_w = 1, PH = 0, PW = 0;  ///< pool window; pooled output rows and columns
  const int64_t* pool_offset = nullptr;  ///< [pool_h * pool_w]: floats from a pool window's first conv
                                         ///< pixel's input to each of its pixels' inputs
  int64_t oc = 0, oc_pad = 0;
  bool relu = false, relu6 = false;
};

// The loop nest compiled for each ISA (conv_direct_avx2.cc, conv_direct_avx512.cc; the portable one is in
// conv_direct.cc).
void conv_direct_rows_avx2(const DirectConvArgs& a, int64_t row0, int64_t row1);
void conv_direct_rows_avx512(const DirectConvArgs& a, int64_t row0, int64_t row1);

namespace {

// Pixels computed together: each weight row is loaded once for all of them.
constexpr int kDirectPixels = 4;

// Sums of kDirectPixels pixels (base[p]: the input under their windows' first tap) over output channels
// [oc0, oc0 + NV lanes).
template <class V, int NV>
inline void direct_sums(const DirectConvArgs& a, const float* const* base, int64_t oc0,
                        typename V::reg (&acc)[kDirectPixels][NV]) {
  for (int p = 0; p < kDirectPixels; ++p)
    for (int v = 0; v < NV; ++v) acc[p][v] = V::zero();
  // One loop over K with an offset per (tap, channel): a loop over taps around one over the channels cost
  // the stem (one channel) its inner loop's overhead at every tap.
  const float* wrow = a.w + oc0;
  for (int64_t kk = 0; kk < a.k; ++kk, wrow += a.oc_pad) {
    const int64_t off = a.k_offset[kk];
    typename V::reg w[NV];
    for (int v = 0; v < NV; ++v) w[v] = V::load(wrow + v * V::lanes);
    for (int p = 0; p < kDirectPixels; ++p) {
      const typename V::reg xb = V::broadcast(base[p] + off);
      for (int v = 0; v < NV; ++v) acc[p][v] = V::fma(xb, w[v], acc[p][v]);
    }
  }
}

// Bias, ReLU (or ReLU6) and the store of output channels [oc0, oc0 + NV lanes) of one output pixel.
template <class V, int NV>
inline void direct_store(const DirectConvArgs& a, int64_t oc0, const typename V::reg (&y)[NV], float* out) {
  static constexpr float kSix = 6.0f;
  for (int v = 0; v < NV; ++v) {
    const int64_t c0 = oc0 + v * V::lanes;
    if (c0 >= a.oc) break;
    typename V::reg r = V::add(y[v], V::load(a.bias + c0));
    if (a.relu) r = V::relu(r);
    if (a.relu6) r = V::min(V::broadcast(&kSix), r);  // min(6, NaN) is the NaN: V::min returns b then
    V::store(out + c0, r, std::min<int64_t>(V::lanes, a.oc - c0));
  }
}

template <class V, int NV>
void direct_conv_rows(const DirectConvArgs& a, int64_t row0, int64_t row1) {
  constexpr int64_t block = NV * V::lanes;
  const float* base[kDirectPixels];
  // The sums are declared where they are used: declared once for the whole function, GCC stored all of them
  // to the stack after every pooled pixel (16 dead 64-byte stores, the hottest instructions of the stem).
  const int64_t window = a.pool_h * a.pool_w;
  const int64_t pixel_step = a.stride_w * a.C;  // floats between neighbouring conv pixels' inputs
  for (int64_t row = row0; row < row1; ++row) {
    const int64_t n = row / a.PH, py = row % a.PH;
    const float* xrow = a.x + (n * a.Hp + py * a.pool_h * a.stride_h) * a.Wp * a.C;
    float* yrow = a.y + row * a.PW * a.oc;
    if (window == 1) {
      // The plain convolution: kDirectPixels neighbours along the row at a time (the last group repeats its
      // final pixel and stores only the real ones).
      for (int64_t px = 0; px < a.PW; px += kDirectPixels) {
        const int64_t real = std::min<int64_t>(kDirectPixels, a.PW - px);
        for (int64_t p = 0; p < kDirectPixels; ++p)
          base[p] = xrow + (px + std::min(p, real - 1)) * pixel_step;
        for (int64_t oc0 = 0; oc0 < a.oc; oc0 += block) {
          typename V::reg acc[kDirectPixels][NV];
          direct_sums<V, NV>(a, base, oc0, acc);
          for (int64_t p = 0; p < real; ++p) direct_store<V, NV>(a, oc0, acc[p], yrow + (px + p) * a.oc);
        }
      }
      continue;
    }
    // Pooled: per channel block, the window's pixels kDirectPixels at a time (a short last group repeats a
    // pixel, which leaves the maximum alone), the running maximum in registers. Bias and ReLU go after the
    // maximum: adding a constant and ReLU are monotone, so the result is the same.
    for (int64_t px = 0; px < a.PW; ++px) {
      const float* first = xrow + px * a.pool_w * pixel_step;
      for (int64_t oc0 = 0; oc0 < a.oc; oc0 += block) {
        // The running maximum lives only for its channel block and starts as the first group's maximum: live
        // across the whole pixel (or zeroed first), it was one register set too many and GCC spilled inside
        // the tap loop; the stem then ran at 0.2-0.56 ms, depending on where the stack and the buffers lay,
        // against 0.16 ms.
        // The maximum over the window's pixels i..i+3 (kDirectPixels).
        auto group_max = [&](int64_t i, typename V::reg(&q)[NV]) {
          for (int64_t p = 0; p < kDirectPixels; ++p)
            base[p] = first + a.pool_offset[std::min(i + p, window - 1)];
          typename V::reg acc[kDirectPixels][NV];
          direct_sums<V, NV>(a, base, oc0, acc);
          for (int v = 0; v < NV; ++v)
            q[v] = V::max(V::max(acc[0][v], acc[1][v]), V::max(acc[2][v], acc[3][v]));
        };
        typename V::reg m[NV];
        group_max(0, m);
        for (int64_t i = kDirectPixels; i < window; i += kDirectPixels) {
          typename V::reg q[NV];
          group_max(i, q);
          for (int v = 0; v < NV; ++v) m[v] = V::max(m[v], q[v]);
        }
        direct_store<V, NV>(a, oc0, m, yrow + px * a.oc);
      }
    }
  }
}

}  // namespace
}  // namespace sparse24::engine::ops
