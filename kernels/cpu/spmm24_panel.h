#pragma once
// The panel GEMM's loop nest, shared by the AVX-512 and the AVX2 file. Each compiles it with its own flags;
// as in spmm24_driver.h the templates live in an unnamed namespace, so no instantiation crosses ISAs.
//
// A panel of rows of X is transposed to Xt[k][rows] (a few registers per k), and every kept weight is
// broadcast and multiplied into the Xt registers of the k it keeps: the packed index bits only move a load
// address, and no permute of X is left in the inner loop. Panel<V, PV> is one panel height: PV registers
// per k and V::sums / PV channels per micro-kernel. The ISA file supplies V:
//   reg, lanes, sums           the register type, its f32 lanes, how many sums a micro-kernel holds
//   meta_ahead                 how many K groups ahead the micro-kernel loads each group's index word
//   zero, load, store, fma     aligned register loads and stores, a fused multiply-add
//   load_lanes(p, lanes)       an unaligned load of the lanes whose bit is set in `lanes`, zeros elsewhere
//   kept<NR>(p), broadcast<NR>(kept, p, r)
//                              the kept values of channels p[0..NR) (one load, or nothing where the
//                              broadcast reads memory), and channel r's value in every lane
//   pack_rows(row, n, K, xt, ld)
//                              Xt[k][i] = row[i][k] for the panel's n rows (Xt rows ld floats apart; rows
//                              past n keep stale values: they are computed and never stored)
//   store_block(a, m0, n, tile, block, ld)
//                              rows m0..m0+n-1 (n <= lanes) of a finished tile to Y from block[c * ld + i]
//                              (channel c, row i), with bias and activation; with a pool, added into it
//                              instead: row i into pool row m0 + i (pool_ld apart), or with pool_ld 0
//                              the rows of each image summed first (pool_image)
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "format/tensor.h"
#include "kernels/cpu/spmm24_driver.h"

namespace sparse24::cpu {
namespace {

/// A pooled store whose rows are pixels (Spmm24Args::pool_ld 0): the pool row of row m's image, and in
/// `rows` how many rows from m on belong to that image.
inline float* pool_image(const Spmm24Args& a, int64_t m, int64_t& rows) {
  const int64_t pixels = a.patches->OH * a.patches->OW, row = a.patch_row0 + m, image = row / pixels;
  rows = (image + 1) * pixels - row;
  return a.pool + (image - a.patch_row0 / pixels) * a.ldy;
}

/// The K slice of one tile's weights a micro-kernel prefetches while it runs (tile -1: none).
struct NextSlice {
  int64_t tile = -1, g0 = 0;
};

/// The tallest panel any ISA file uses (the row-pointer arrays below).
constexpr int64_t kMaxPanelRows = 64;

// Per-thread scratch that grows and is kept, so a call allocates nothing once warm.
struct PanelScratch {
  std::vector<float, AlignedAllocator<float>> xt, partial, zeros;
  std::vector<float, AlignedAllocator<float>> tail_rows;  // a tail's explicit patch rows (tail_pass)
  std::vector<float, AlignedAllocator<float>> tail_y;     // and its outputs, where they go into a pool
  std::vector<float, AlignedAllocator<float>> planar;     // a channel-planar copy of the input (copy_planar)
  // Image blocks: the padded copy of one block, the geometry its zero border was made for, and each K
  // group's offset into it.
  std::vector<float, AlignedAllocator<float>> image;
  std::array<int64_t, 7> image_shape{};
  std::vector<int64_t> group_offset;
};
PanelScratch& panel_scratch() {
  static thread_local PanelScratch s;
  return s;
}

// Makes a scratch vector hold at least n elements and never shrinks it: sized down for one layer and back up
// for the next, a vector zeroes the regrown part on every call (a Gemm after a smaller convolution paid a
// 360 KiB memset per call: 0.002 -> 0.005 ms for the demo CNN's 128x1568 layer at batch 1).
template <class Vec>
void ensure_size(Vec& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// One panel height: PV registers (lanes·PV rows) per k, NR channels per micro-kernel.
template <class V, int PV>
struct Panel {
  static constexpr int64_t lanes = V::lanes, pv = PV;
  static constexpr int64_t rows = V::lanes * PV;
  static constexpr int nr = V::sums / PV;
  static constexpr int row_shift = std::countr_zero(uint64_t(rows * sizeof(float)));  // log2 of Xt row bytes
  // K groups per K block, for this core's L1 (panel_block_groups).
  static int64_t block_groups() {
    static const int64_t groups = panel_block_groups(rows, l1d_bytes());
    return groups;
  }
  static constexpr int64_t store_rows = V::lanes;
  static_assert(rows * sizeof(float) == size_t(1) << row_shift && kTileRows % nr == 0);

  // Xt rows `ld` floats apart: a panel's own height, or a planar copy's stride (copy_planar).
  static void pack_rows(const float* const* row, int64_t n, int64_t K, float* xt, int64_t ld = rows) {
    V::pack_rows(row, n, K, xt, ld);
  }
  static void copy_lanes(const float* from, uint32_t lanes, float* to) {
    V::store(to, V::load_lanes(from, lanes));
  }
  static void store_block(const Spmm24Args& a, int64_t m0, int64_t n, int64_t tile, const float* block) {
    V::store_block(a, m0, n, tile, block, rows);
  }

  // Where the panel's X comes from, for the micro-kernel: group g's four k sit at group(g), one after the
  // other 1 << row_shift bytes apart, and register v of each at vec(x, v).
  // Xt, the packed panel: Xt[k][rows].
  struct XtSource {
    const float* xt;
    static constexpr int row_shift = Panel::row_shift;
    const float* group(int64_t g) const { return xt + g * 4 * rows; }
    static const float* vec(const float* x, int v) { return x + V::lanes * v; }
  };
  // An image block (see image_gemm): the lanes are images, register v is output pixel v of the panel's
  // run, one padded input pixel after the one before it; group g reads its kernel position's pixels at
  // offset[g]. The pixel stride is a constant so that it folds into the loads' displacements (a stride
  // held in a register cost three more additions per kept value: the CNN's convolution ran 10% slower).
  struct ImageSource {
    const float* origin;  // the input pixel under the panel's first output pixel at kernel position (0, 0)
    const int64_t* offset;
    static constexpr int row_shift = std::countr_zero(uint64_t(V::lanes * sizeof(float)));
    const float* group(int64_t g) const { return origin + offset[g]; }
    static const float* vec(const float* x, int v) { return x + kImageBlockMaxChannels * V::lanes * v; }
  };

  // Channels Lane0..Lane0+NR-1 of one tile over groups [g0, g0+ng), for the panel's rows. Sums start at
  // zero (`first`) or from `partial` ([NR][rows]) and end there. `next` is the K slice to prefetch meanwhile:
  // the same slice of the next tile, or after a block's last tile the first tile's slice of the next K
  // block (f32, one thread, M = 32: 384x1536 0.108 -> 0.105 ms, 4096x4096 3.25-3.34 -> 3.12-3.20; M = 128
  // 1-2% faster); slices of consecutive tiles lie a whole tile apart, too far for the hardware prefetchers.
  // It asks for L1, not L2: with L2 the next tile's first micro-kernel waited on L2 for every line of its
  // kept values (one thread, ratio to oneDNN, L2 -> L1: M = 32 384x384 1.46-1.50 -> 1.86-1.88, 4096x4096
  // 1.36-1.47 -> 1.74-1.79; M = 128 384x384 1.47-1.48 -> 1.54-1.55; M >= 512 unchanged).
  template <typename VT, int Lane0, class Src>
  static void micro(const Spmm24Args& a, int64_t tile, int64_t g0, int64_t ng, const Src& src, float* partial,
                    bool first, NextSlice next) {
    constexpr int NR = nr;
    using reg = typename V::reg;
    const Packed24& W = *a.W;
    reg acc[NR][PV];
    for (int r = 0; r < NR; ++r)
      for (int v = 0; v < PV; ++v) acc[r][v] = first ? V::zero() : V::load(partial + r * rows + V::lanes * v);
    const VT* vals = W.tile_values<VT>(tile) + g0 * 2 * kTileRows + Lane0;
    const uint64_t* meta = reinterpret_cast<const uint64_t*>(W.tile_meta(tile)) + g0;
    const char* next_vals =
        next.tile >= 0 ? reinterpret_cast<const char*>(W.tile_values<VT>(next.tile) + next.g0 * 2 * kTileRows)
                       : nullptr;
    const uint64_t* next_meta =
        next.tile >= 0 ? reinterpret_cast<const uint64_t*>(W.tile_meta(next.tile)) + next.g0 : nullptr;
    if (next_meta) _mm_prefetch(reinterpret_cast<const char*>(next_meta), _MM_HINT_T0);
    // Each group's metadata word is loaded V::meta_ahead groups ahead: its index bits are the FMAs' load
    // addresses, and loading it in the group itself left the loop waiting on it (AVX-512, inner loop alone
    // on L1-resident data: 210 GFLOP/s, 234 with the word two groups ahead).
    constexpr int ahead = V::meta_ahead;
    uint64_t bits_ahead[ahead];
    for (int i = 0; i < ahead; ++i) bits_ahead[i] = meta[std::min<int64_t>(i, ng - 1)];
    for (int64_t g = 0; g < ng; ++g, vals += 2 * kTileRows) {
      const float* xg = src.group(g0 + g);
      __asm__ volatile("" : "+r"(xg));  // one pointer per group: the loads below add only their index bits
      uint64_t bits = bits_ahead[0];
      for (int i = 0; i + 1 < ahead; ++i) bits_ahead[i] = bits_ahead[i + 1];
      bits_ahead[ahead - 1] = meta[std::min(g + ahead, ng - 1)];
      __asm__ volatile("" : "+r"(bits));  // keeps it the register loaded early, not a reload of meta[g]
      if (next_vals) {
        for (size_t line = 0; line < 2 * kTileRows * sizeof(VT); line += 64)
          _mm_prefetch(next_vals + g * 2 * kTileRows * sizeof(VT) + line, _MM_HINT_T0);
        if (g % 8 == 7) _mm_prefetch(reinterpret_cast<const char*>(next_meta + g + 1), _MM_HINT_T0);
      }
      for (int j = 0; j < 2; ++j) {
        // One load for the NR channels, then a register broadcast each where V does so: the loads are the
        // limit here (the FMAs below each read a line of Xt), the shuffle port has room.
        const VT* kept_j = vals + j * kTileRows;
        const auto kept = V::template kept<NR>(kept_j);
        for (int r = 0; r < NR; ++r) {
          const reg w = V::template broadcast<NR>(kept, kept_j, r);
          // The lane's two index bits, already scaled to the byte offset of an Xt row.
          constexpr int s = Src::row_shift;
          const int shift = 32 * ((Lane0 + r) % 2) + 4 * ((Lane0 + r) / 2) + 2 * j;
          const uint64_t offset =
              (shift >= s ? bits >> (shift - s) : bits << (s - shift)) & (uint64_t(3) << s);
          const float* x = reinterpret_cast<const float*>(reinterpret_cast<const char*>(xg) + offset);
          for (int v = 0; v < PV; ++v) acc[r][v] = V::fma(w, V::load(src.vec(x, v)), acc[r][v]);
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int v = 0; v < PV; ++v) V::store(partial + r * rows + V::lanes * v, acc[r][v]);
  }

  // All 16 channels of tile t over one K block: 16 / NR micro-kernels over the same L1-resident X.
  template <typename VT, class Src>
  static void tile(const Spmm24Args& a, int64_t t, int64_t g0, int64_t ng, const Src& src, float* partial,
                   bool first, NextSlice next) {
    tile_lanes<VT>(a, t, g0, ng, src, partial, first, next,
                   std::make_integer_sequence<int, kTileRows / nr>{});
  }
  template <typename VT, class Src, int... Q>
  static void tile_lanes(const Spmm24Args& a, int64_t t, int64_t g0, int64_t ng, const Src& src,
                         float* partial, bool first, NextSlice next, std::integer_sequence<int, Q...>) {
    (micro<VT, Q * nr>(a, t, g0, ng, src, partial + Q * nr * rows, first, Q == 0 ? next : NextSlice{}), ...);
  }
};

// For output pixels p0.. of a convolution on its channels-last input, calls emit(position, row) once per
// kernel position, row[i] pointing at the C channels under it of pixel p0 + i (`zeros` where the window
// leaves the image). The pixels' image, top input row and left input column are found once (stepping
// through the output pixels, no division per kernel position: with divisions per position and pixel this
// index arithmetic cost more than the panels' transposes, measured on the CNN's 3x3 convolutions).
template <class Emit>
void for_patch_positions(const ConvPatches& c, int64_t p0, int64_t rows, const float* zeros, Emit&& emit) {
  const float* image[kMaxPanelRows];
  int64_t ih0[kMaxPanelRows], iw0[kMaxPanelRows];
  int64_t n = p0 / (c.OH * c.OW), oh = p0 / c.OW % c.OH, ow = p0 % c.OW;
  for (int64_t i = 0; i < rows; ++i) {
    image[i] = c.x + n * c.H * c.W * c.C;
    ih0[i] = oh * c.stride_h - c.pad_top;
    iw0[i] = ow * c.stride_w - c.pad_left;
    if (++ow == c.OW) {
      ow = 0;
      if (++oh == c.OH) oh = 0, ++n;
    }
  }
  const float* row[kMaxPanelRows] = {};
  for (int64_t kh = 0; kh < c.KH; ++kh)
    for (int64_t kw = 0; kw < c.KW; ++kw) {
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t ih = ih0[i] + kh * c.dilation_h, iw = iw0[i] + kw * c.dilation_w;
        row[i] = uint64_t(ih) < uint64_t(c.H) && uint64_t(iw) < uint64_t(c.W)
                     ? image[i] + (ih * c.W + iw) * c.C
                     : zeros;
      }
      emit(kh * c.KW + kw, row);
    }
}

// Xt for output pixels p0.. of a convolution, straight from its channels-last input: each kernel
// position's C channels of every pixel in the panel, transposed.
template <class P>
void pack_patch_panel(const ConvPatches& c, int64_t p0, int64_t rows, const float* zeros, float* xt) {
  for_patch_positions(c, p0, rows, zeros, [&](int64_t position, const float* const* row) {
    P::pack_rows(row, rows, c.C, xt + position * c.C * P::rows);
  });
}

// A channel-planar copy of the input pixels that a run of a call's patch rows read (planar_patches):
// channel ch of input pixel `base + p` (counted over N·H·W) at x[ch * ld + p], for the patch rows [row0,
// row_end). Each input pixel is transposed once here instead of once per kernel position by
// pack_patch_panel (nine times for a 3x3 kernel); the panels then pack Xt with masked loads.
struct PlanarInput {
  const float* x = nullptr;  // null: no copy, the panels pack from the channels-last input
  int64_t ld = 0, base = 0, row0 = 0, row_end = 0;
  bool covers(int64_t p0, int64_t rows) const { return x && p0 >= row0 && p0 + rows <= row_end; }
};

// Where a planar copy serves: stride 1 and output the size of the input, so that a patch row's input pixel
// at every kernel position is the row's own index plus a constant, in range or not (pack_planar_panel masks
// the lanes whose window leaves the image); and a kernel of more than one position, whose pixels repeat in
// Xt (of at most kPlanarMaxKernel rows and columns).
constexpr int64_t kPlanarMaxKernel = 16;
inline bool planar_patches(const ConvPatches& c) {
  return c.stride_h == 1 && c.stride_w == 1 && c.OH == c.H && c.OW == c.W && c.KH * c.KW > 1 &&
         c.KH <= kPlanarMaxKernel && c.KW <= kPlanarMaxKernel;
}

// The offset from an output pixel's index to its input pixel's at kernel position (kh, kw) (planar_patches).
inline int64_t planar_shift(const ConvPatches& c, int64_t kh, int64_t kw) {
  return (kh * c.dilation_h - c.pad_top) * c.W + kw * c.dilation_w - c.pad_left;
}

// A planar copy holds about this many bytes, so that it stays in L2 while its panels read it: the patch
// rows of a call are copied a run at a time (planar_run_rows).
constexpr int64_t kPlanarCopyBytes = int64_t(192) << 10;

// The patch rows one planar copy serves: whole tall panels, as many as fit kPlanarCopyBytes beside the
// pixels the windows reach above and below them, at least one.
inline int64_t planar_run_rows(const ConvPatches& c, int64_t tall_rows) {
  const int64_t reach = planar_shift(c, c.KH - 1, c.KW - 1) - planar_shift(c, 0, 0) + kMaxPanelRows;
  const int64_t fit = kPlanarCopyBytes / (c.C * int64_t(sizeof(float))) - reach;
  return std::max<int64_t>(1, fit / tall_rows) * tall_rows;
}

// The planar copy for patch rows [row0, row0 + rows). It spans every pixel index a panel's loads form,
// masked lanes included (up to a panel's height past the last row, and outside the images where the
// windows leave them), so that no load leaves it; only the pixels inside the images are copied.
template <class P>
PlanarInput copy_planar(const ConvPatches& c, int64_t row0, int64_t rows,
                        std::vector<float, AlignedAllocator<float>>& buf) {
  const int64_t lo = row0 + planar_shift(c, 0, 0);
  const int64_t last = row0 + rows + planar_shift(c, c.KH - 1, c.KW - 1);  // past the last pixel read
  const int64_t hi = last + kMaxPanelRows;
  const int64_t first = std::max<int64_t>(0, lo), end = std::min(c.N * c.H * c.W, last);
  const int64_t base = first - (first - lo + 15) / 16 * 16;  // the copied pixels start 64-byte aligned
  // Channels an odd number of cache lines apart, so that a panel's loads across all of them spread over
  // every L1 set (a power-of-two multiple of lines apart, they shared a few sets and evicted each other).
  const int64_t ld = ((hi - base + 15) / 16 | 1) * 16;
  ensure_size(buf, size_t(c.C * ld));
  float* x = buf.data();
  const float* row[kMaxPanelRows];
  for (int64_t p = first; p < end; p += kMaxPanelRows) {
    const int64_t n = std::min(kMaxPanelRows, end - p);
    for (int64_t i = 0; i < n; ++i) row[i] = c.x + (p + i) * c.C;
    P::pack_rows(row, n, c.C, x + (p - base), ld);
  }
  return {x, ld, base, row0, row0 + rows};
}

// Xt for patch rows p0.. from the planar copy: for each kernel position, every channel's row of Xt is one
// masked load per register, the lanes whose window leaves the image zero. Bit for bit pack_patch_panel's Xt.
template <class P>
void pack_planar_panel(const ConvPatches& c, const PlanarInput& in, int64_t p0, int64_t rows, float* xt) {
  static_assert(P::rows <= 64 && P::lanes <= 32);
  // Which rows' windows stay inside the image, as bit masks over the panel's rows: by kernel row (the input
  // row in range) and by kernel column (the input column), ANDed per position.
  uint64_t inside_h[kPlanarMaxKernel] = {}, inside_w[kPlanarMaxKernel] = {};
  for (int64_t i = 0, h = p0 / c.OW % c.OH, w = p0 % c.OW; i < rows; ++i) {
    for (int64_t kh = 0; kh < c.KH; ++kh)
      inside_h[kh] |= uint64_t(uint64_t(h + kh * c.dilation_h - c.pad_top) < uint64_t(c.H)) << i;
    for (int64_t kw = 0; kw < c.KW; ++kw)
      inside_w[kw] |= uint64_t(uint64_t(w + kw * c.dilation_w - c.pad_left) < uint64_t(c.W)) << i;
    if (++w == c.OW) w = 0, h = h + 1 == c.OH ? 0 : h + 1;
  }
  const int64_t C = c.C, ld = in.ld;  // locals: the stores below could alias the struct fields
  constexpr uint64_t lane_bits = (uint64_t(1) << P::lanes) - 1;
  for (int64_t kh = 0; kh < c.KH; ++kh)
    for (int64_t kw = 0; kw < c.KW; ++kw) {
      const uint64_t inside = inside_h[kh] & inside_w[kw];
      uint32_t lanes[P::pv];
      for (int64_t v = 0; v < P::pv; ++v) lanes[v] = uint32_t((inside >> (v * P::lanes)) & lane_bits);
      const float* from = in.x + (p0 + planar_shift(c, kh, kw) - in.base);
      float* to = xt + (kh * c.KW + kw) * C * P::rows;
      for (int64_t ch = 0; ch < C; ++ch, from += ld, to += P::rows)
        for (int64_t v = 0; v < P::pv; ++v) P::copy_lanes(from + v * P::lanes, lanes[v], to + v * P::lanes);
    }
}

// Tiles [tb, te) over every K block of `block` groups, each tile's sums in partial[(t - tb)][16][P::rows].
template <class P, typename VT, class Src>
void run_tiles(const Spmm24Args& a, int64_t tb, int64_t te, const Src& src, int64_t block, float* partial) {
  const int64_t G = a.W->steps;
  for (int64_t g0 = 0; g0 < G; g0 += block) {
    const int64_t ng = std::min(block, G - g0);
    for (int64_t t = tb; t < te; ++t) {
      // The next tile's slice, or after the last tile the first tile's slice of the next K block.
      const NextSlice next = t + 1 < te    ? NextSlice{t + 1, g0}
                             : g0 + ng < G ? NextSlice{tb, g0 + ng}
                                           : NextSlice{};
      P::template tile<VT>(a, t, g0, ng, src, partial + (t - tb) * kTileRows * P::rows, g0 == 0, next);
    }
  }
}

// One panel of `rows` (<= P::rows) rows from m0: pack it, run every tile over every K block, write Y.
template <class P, typename VT>
void panel_pass(const Spmm24Args& a, int64_t tb, int64_t te, int64_t m0, int64_t rows,
                const PlanarInput& planar, PanelScratch& scratch) {
  static_assert(P::rows <= kMaxPanelRows && P::rows % P::store_rows == 0);
  const int64_t K = a.W->cols;
  float* xt = scratch.xt.data();
  if (planar.x) {
    pack_planar_panel<P>(*a.patches, planar, a.patch_row0 + m0, rows, xt);
  } else if (a.patches) {
    pack_patch_panel<P>(*a.patches, a.patch_row0 + m0, rows, scratch.zeros.data(), xt);
  } else {
    const float* row[kMaxPanelRows] = {};
    for (int64_t i = 0; i < rows; ++i) row[i] = static_cast<const float*>(a.X) + (m0 + i) * a.ldx;
    P::pack_rows(row, rows, K, xt);
  }
  run_tiles<P, VT>(a, tb, te, typename P::XtSource{xt}, P::block_groups(), scratch.partial.data());
  // Row block by row block, each row of Y left to right: the stores run as a few sequential streams. The
  // lines of Y a block stores kStorePrefetchTiles tiles later are prefetched: without, the stores waited on
  // their lines (f32, M = 2048, 1 thread, 3 alternating runs: 1536x384 6.66-6.82 -> 6.41-6.54 ms, 384x1536
  // 6.65-6.78 -> 6.44-6.52, 3072x768 25.7-26.3 -> 25.5-25.6; the CNN's 64-channel convolution unchanged; a
  // write-intent prefetchw measured the same as this read prefetch).
  constexpr int64_t kStorePrefetchTiles = 3;
  Spmm24Args out = a;
  out.pool_ld = 0;  // pooled: the rows are pixels, each added into its image's pool row
  for (int64_t i = 0; i < rows; i += P::store_rows) {
    const int64_t n = std::min(P::store_rows, rows - i);
    for (int64_t t = tb; t < te; ++t) {
      if (a.Y && t + kStorePrefetchTiles < te)
        for (int64_t r = 0; r < n; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(a.Y + (m0 + i + r) * a.ldy +
                                                     (t + kStorePrefetchTiles) * kTileRows),
                       _MM_HINT_T0);
      P::store_block(out, m0 + i, n, t, scratch.partial.data() + (t - tb) * kTileRows * P::rows + i);
    }
  }
}

// Image blocks (image_block_lanes, spmm24.h): the rows of `a` are whole output images, L = P::lanes of them
// side by side in the lanes. Each block of L images is copied once into scratch.image as
// [padded input row][padded input column][C][L], zeros where the windows leave the images (V::pack_rows
// transposes each input pixel's channels of the L images), a pixel taking the room of
// kImageBlockMaxChannels channels. A panel is a run of Tall::pv, Short::pv or
// Tiny::pv consecutive output pixels of one output row, register v holding pixel v for the L images; K group
// g (four channels of one kernel position, C % 4 == 0) reads them at that position's offset. So nothing is
// packed per kernel position, and Y is still written by register transposes (V::store_block), its rows
// for one pixel L images apart (or summed into Spmm24Args::pool). Each output sums its K groups in the same
// order as in panel_pass, so the bits are the same.
template <class P, typename VT>
void image_run(const Spmm24Args& a, int64_t tb, int64_t te, const float* origin, int64_t image0,
               int64_t images, int64_t pixel, PanelScratch& scratch) {
  const ConvPatches& c = *a.patches;
  const typename P::ImageSource src{origin, scratch.group_offset.data()};
  // K blocks of whole kernel rows, about 48 groups (one row of a 3x3 kernel on 64 channels: its pixels
  // under a 4-pixel run take 24 KiB): 2-3% faster there than 32-group blocks, which end inside a row.
  const int64_t row_groups = c.KW * c.C / 4, block_rows = std::max<int64_t>(1, 48 / row_groups);
  const int64_t block = row_groups * block_rows <= 64 ? row_groups * block_rows : P::block_groups();
  run_tiles<P, VT>(a, tb, te, src, block, scratch.partial.data());
  // Y's rows for pixel `pixel + v` of images image0.. lie c.OH * c.OW rows apart.
  const int64_t pixels = c.OH * c.OW;
  for (int64_t v = 0; v < P::pv; ++v) {
    Spmm24Args out = a;
    if (a.Y) out.Y = a.Y + (image0 * pixels + pixel + v) * a.ldy;  // (null where it pools)
    out.ldy = pixels * a.ldy;
    if (a.residual) out.residual = a.residual + (image0 * pixels + pixel + v) * a.ldy;
    if (a.pool) out.pool = a.pool + image0 * a.ldy, out.pool_ld = a.ldy;  // row i: image image0 + i
    for (int64_t t = tb; t < te; ++t)
      P::store_block(out, 0, images, t,
                     scratch.partial.data() + (t - tb) * kTileRows * P::rows + v * P::lanes);
  }
}

template <class Tall, class Short, class Tiny, typename VT>
void image_gemm(const Spmm24Args& a, int64_t tb, int64_t te, PanelScratch& scratch) {
  constexpr int64_t L = Tall::lanes;
  static_assert(Short::lanes == L && Tiny::lanes == L && Tall::pv > Short::pv && Short::pv >= Tiny::pv &&
                Tiny::pv == 1);  // Tiny::pack_rows writes one pixel's [C][L]
  const ConvPatches& c = *a.patches;
  const int64_t rows = (c.OH - 1) * c.stride_h + (c.KH - 1) * c.dilation_h + 1;  // padded input rows read
  const int64_t cols = (c.OW - 1) + (c.KW - 1) * c.dilation_w + 1;               // and columns
  constexpr int64_t pixel = kImageBlockMaxChannels * L;  // floats per padded input pixel (C of them used)
  // The zero border stays from block to block and call to call while the copied pixels land on the same
  // places (a new geometry zeroes the whole copy once).
  const std::array<int64_t, 7> shape = {rows, cols, L, c.H, c.W, c.pad_top, c.pad_left};
  if (scratch.image_shape != shape) {
    scratch.image.assign(size_t(rows * cols * pixel), 0.0f);
    scratch.image_shape = shape;
  }
  ensure_size(scratch.group_offset, size_t(a.W->steps));
  for (int64_t g = 0; g < a.W->steps; ++g) {
    const int64_t k = 4 * g, position = k / c.C, kh = position / c.KW, kw = position % c.KW;
    scratch.group_offset[size_t(g)] = (kh * c.dilation_h * cols + kw * c.dilation_w) * pixel + k % c.C * L;
  }
  const int64_t pixels = c.OH * c.OW, first = a.patch_row0 / pixels, count = a.M / pixels;
  // This call's output rows of each image, and the padded input rows their windows read.
  const int64_t oh0 = a.image_row_begin, oh1 = a.image_row_end > 0 ? a.image_row_end : c.OH;
  const int64_t row0 = oh0 * c.stride_h, row1 = (oh1 - 1) * c.stride_h + (c.KH - 1) * c.dilation_h + 1;
  float* image = scratch.image.data();
  for (int64_t i0 = 0; i0 < count; i0 += L) {
    const int64_t images = std::min(L, count - i0);
    // The block's copy: every input pixel that some window reads.
    const float* row[kMaxPanelRows] = {};
    for (int64_t h = std::max<int64_t>(0, row0 - c.pad_top); h < c.H && h + c.pad_top < row1; ++h)
      for (int64_t w = 0; w < c.W && w + c.pad_left < cols; ++w) {
        if (h + c.pad_top < 0 || w + c.pad_left < 0) continue;
        for (int64_t i = 0; i < images; ++i) row[i] = c.x + (((first + i0 + i) * c.H + h) * c.W + w) * c.C;
        Tiny::pack_rows(row, images, c.C, image + ((h + c.pad_top) * cols + w + c.pad_left) * pixel);
      }
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = 0; ow < c.OW;) {
        const float* origin = image + (oh * c.stride_h * cols + ow) * pixel;
        const int64_t p = oh * c.OW + ow, left = c.OW - ow;
        if (left >= Tall::pv) {
          image_run<Tall, VT>(a, tb, te, origin, i0, images, p, scratch);
          ow += Tall::pv;
        } else if (left >= Short::pv) {
          image_run<Short, VT>(a, tb, te, origin, i0, images, p, scratch);
          ow += Short::pv;
        } else {
          image_run<Tiny, VT>(a, tb, te, origin, i0, images, p, scratch);
          ow += Tiny::pv;
        }
      }
  }
}

// The ISA's permute GEMV for a panel GEMM's last few rows (tail_pass), each output summing its K groups in
// the panels' order with one sum, so its bits are a panel's.
using TailFn = void (*)(const Spmm24Args& a, int64_t tile_begin, int64_t tile_end);

// Rows [m0, m0 + rows) through `tail`: a panel costs the same for 1 row as for all of its own, the GEMV by
// the row (f32 64x576, the CNN's 3x3 convolution, 4 rows, one thread: 0.0041 ms in a 16-row panel, 0.0011
// by the GEMV). Patch rows are copied out first (im2col of these rows only); the residual follows the
// GEMV's epilogue as it follows the activation in a panel's store.
inline void tail_pass(const Spmm24Args& a, int64_t tb, int64_t te, int64_t m0, int64_t rows, TailFn tail,
                      PanelScratch& scratch) {
  Spmm24Args t = a;
  t.M = rows;
  t.patches = nullptr;
  t.residual = nullptr;
  t.pool = nullptr;
  if (a.pool) {  // the rows to scratch, then summed into the pool below
    ensure_size(scratch.tail_y, size_t(rows * a.ldy));
    t.Y = scratch.tail_y.data();
  } else {
    t.Y = a.Y + m0 * a.ldy;
  }
  if (a.patches) {
    const ConvPatches& c = *a.patches;
    const int64_t K = a.W->cols;
    ensure_size(scratch.tail_rows, size_t(rows * K));
    float* x = scratch.tail_rows.data();
    for_patch_positions(c, a.patch_row0 + m0, rows, scratch.zeros.data(),
                        [&](int64_t position, const float* const* row) {
                          for (int64_t i = 0; i < rows; ++i)
                            std::memcpy(x + i * K + position * c.C, row[i], size_t(c.C) * sizeof(float));
                        });
    t.X = x;
    t.ldx = K;
  } else {
    t.X = static_cast<const float*>(a.X) + m0 * a.ldx;
  }
  tail(t, tb, te);
  if (!a.residual && !a.pool) return;
  const int64_t n1 = std::min(a.W->rows, te * kTileRows);
  for (int64_t i = 0; i < rows; ++i) {
    float* y = t.Y + i * a.ldy;
    if (a.residual) {
      const float* r = a.residual + (m0 + i) * a.ldy;
      for (int64_t n = tb * kTileRows; n < n1; ++n) {
        const float v = y[n] + r[n];
        y[n] = a.residual_relu ? std::max(v, 0.0f) : v;
      }
    }
    if (!a.pool) continue;
    int64_t image_rows;
    float* pool = pool_image(a, m0 + i, image_rows);
    for (int64_t n = tb * kTileRows; n < n1; ++n) pool[n] += y[n];
  }
}

// Tall panels down M; last rows that fit shorter panels run as those (less padding): Short, Short and Tiny,
// or Tiny; at most half a Tiny panel's rows go to `tail` instead. Every output sums its K groups in the
// same order whichever panel or the tail computes it, so the results depend neither on the panels nor on
// the thread split.
template <class Tall, class Short, class Tiny, typename VT>
void panel_gemm(const Spmm24Args& a, int64_t tb, int64_t te, TailFn tail) {
  static_assert(Tiny::rows <= Short::rows && 2 * Short::rows == Tall::rows);
  PanelScratch& scratch = panel_scratch();
  ensure_size(scratch.partial, size_t((te - tb) * kTileRows * Tall::rows));
  if (image_block_lanes(a, Tall::lanes) > 0) return image_gemm<Tall, Short, Tiny, VT>(a, tb, te, scratch);
  ensure_size(scratch.xt, size_t(a.W->cols * Tall::rows));
  if (a.patches) ensure_size(scratch.zeros, size_t(a.patches->C));  // read only: stays zero
  const bool planar_ok = a.patches && planar_patches(*a.patches);
  const int64_t planar_rows = planar_ok ? planar_run_rows(*a.patches, Tall::rows) : 0;
  PlanarInput planar;
  constexpr int64_t tiny_rows = Tiny::rows < Short::rows ? Tiny::rows : 0;  // 0: no Tiny panel
  for (int64_t m0 = 0; m0 < a.M;) {
    if (a.M - m0 <= Tiny::rows / 2) return tail_pass(a, tb, te, m0, a.M - m0, tail, scratch);
    const int64_t height = next_panel_height(a.M - m0, Tall::rows, tiny_rows);
    const int64_t rows = std::min(height, a.M - m0);
    if (planar_ok && !planar.covers(a.patch_row0 + m0, rows))
      planar =
          copy_planar<Tall>(*a.patches, a.patch_row0 + m0, std::min(planar_rows, a.M - m0), scratch.planar);
    if (height == Tall::rows)
      panel_pass<Tall, VT>(a, tb, te, m0, rows, planar, scratch);
    else if (height == Short::rows)
      panel_pass<Short, VT>(a, tb, te, m0, rows, planar, scratch);
    else
      panel_pass<Tiny, VT>(a, tb, te, m0, rows, planar, scratch);
    m0 += rows;
  }
}

}  // namespace
}  // namespace sparse24::cpu
