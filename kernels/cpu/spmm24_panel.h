#pragma once
// The panel GEMM's loop nest, shared by the AVX-512 and the AVX2 file. Each compiles it with its own flags;
// as in spmm24_driver.h the templates live in an unnamed namespace, so no instantiation crosses ISAs.
//
// A panel of rows of X is transposed to Xt[k][rows] (a few registers per k), and every kept weight is
// broadcast and multiplied into the Xt registers of the k it keeps: the packed index bits only move a load
// address, and no permute of X is left in the inner loop. The ISA file describes each panel height it runs
// with a struct:
//   rows, groups, store_rows    the panel height; the K block (groups of 4) whose Xt stays in L1; the rows
//                               one store_block call writes
//   pack_rows(row, n, K, xt)    Xt[k][i] = row[i][k] for the panel's n rows (Xt rows `rows` floats apart;
//                               rows past n keep stale values: they are computed and never stored)
//   tile<VT>(a, tile, g0, ng, xt, partial, first, prefetch)
//                               all 16 channels of one tile over groups [g0, g0+ng); sums start at zero
//                               (`first`) or from `partial` ([16][rows]) and end there; `prefetch` asks for
//                               the next tile's slice of the same K block
//   store_block(a, m0, n, tile, block)
//                               rows m0..m0+n-1 (n <= store_rows) of a finished tile to Y, from
//                               block[c * rows + i] (channel c, row i), with bias and activation
#include <algorithm>
#include <cstdint>
#include <vector>

#include "format/tensor.h"
#include "kernels/cpu/spmm24_driver.h"

namespace sparse24::cpu {
namespace {

/// The tallest panel any ISA file uses (the row-pointer arrays below).
constexpr int64_t kMaxPanelRows = 64;
/// Xt bytes of one K block: 32 KiB, within L1 next to a tile's weights and sums.
constexpr int64_t kPanelBlockBytes = 32 << 10;

// Per-thread scratch that grows and is kept, so a call allocates nothing once warm.
struct PanelScratch {
  std::vector<float, AlignedAllocator<float>> xt, partial, zeros;
};
PanelScratch& panel_scratch() {
  static thread_local PanelScratch s;
  return s;
}

// Xt for output pixels p0.. of a convolution, straight from its channels-last input: for each kernel
// position, the C channels under it of every pixel in the panel (`zeros` where the window leaves the image).
template <class P>
void pack_patch_panel(const ConvPatches& c, int64_t p0, int64_t rows, const float* zeros, float* xt) {
  const float* row[kMaxPanelRows] = {};
  for (int64_t kh = 0; kh < c.KH; ++kh)
    for (int64_t kw = 0; kw < c.KW; ++kw) {
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t p = p0 + i, n = p / (c.OH * c.OW), oh = p / c.OW % c.OH, ow = p % c.OW;
        const int64_t ih = oh * c.stride_h - c.pad_top + kh * c.dilation_h;
        const int64_t iw = ow * c.stride_w - c.pad_left + kw * c.dilation_w;
        row[i] = ih >= 0 && ih < c.H && iw >= 0 && iw < c.W ? c.x + ((n * c.H + ih) * c.W + iw) * c.C : zeros;
      }
      P::pack_rows(row, rows, c.C, xt + (kh * c.KW + kw) * c.C * P::rows);
    }
}

// One panel of `rows` (<= P::rows) rows from m0: pack it, run every tile over every K block, write Y.
template <class P, typename VT>
void panel_pass(const Spmm24Args& a, int64_t tb, int64_t te, int64_t m0, int64_t rows, PanelScratch& scratch) {
  static_assert(P::rows <= kMaxPanelRows && P::rows % P::store_rows == 0);
  const int64_t K = a.W->cols, G = a.W->steps;
  float* xt = scratch.xt.data();
  if (a.patches) {
    pack_patch_panel<P>(*a.patches, a.patch_row0 + m0, rows, scratch.zeros.data(), xt);
  } else {
    const float* row[kMaxPanelRows] = {};
    for (int64_t i = 0; i < rows; ++i) row[i] = static_cast<const float*>(a.X) + (m0 + i) * a.ldx;
    P::pack_rows(row, rows, K, xt);
  }
  for (int64_t g0 = 0; g0 < G; g0 += P::groups) {
    const int64_t ng = std::min(P::groups, G - g0);
    for (int64_t t = tb; t < te; ++t)
      P::template tile<VT>(a, t, g0, ng, xt, scratch.partial.data() + (t - tb) * kTileRows * P::rows, g0 == 0,
                           t + 1 < te);
  }
  // Row block by row block, each row of Y left to right: the stores run as a few sequential streams.
  for (int64_t i = 0; i < rows; i += P::store_rows)
    for (int64_t t = tb; t < te; ++t)
      P::store_block(a, m0 + i, std::min(P::store_rows, rows - i), t,
                     scratch.partial.data() + (t - tb) * kTileRows * P::rows + i);
}

// Tall panels down M; a last panel that fits the short one runs as that (less padding). Every output sums
// its K groups in the same order whichever panel computes it, so the results do not depend on the split.
template <class Tall, class Short, typename VT>
void panel_gemm(const Spmm24Args& a, int64_t tb, int64_t te) {
  static_assert(Short::rows <= Tall::rows);
  PanelScratch& scratch = panel_scratch();
  scratch.xt.resize(size_t(a.W->cols * Tall::rows));
  scratch.partial.resize(size_t((te - tb) * kTileRows * Tall::rows));
  if (a.patches) scratch.zeros.assign(size_t(a.patches->C), 0.0f);
  for (int64_t m0 = 0; m0 < a.M; m0 += Tall::rows) {
    const int64_t rows = std::min(Tall::rows, a.M - m0);
    if (rows > Short::rows)
      panel_pass<Tall, VT>(a, tb, te, m0, rows, scratch);
    else
      panel_pass<Short, VT>(a, tb, te, m0, rows, scratch);
  }
}

}  // namespace
}  // namespace sparse24::cpu
