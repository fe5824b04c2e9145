#include "kernels/cpu/packed24.h"

#include <cstdint>
#include <cstring>

#include "util/error.h"

namespace sparse24::cpu {

namespace {

// Bit position of lane i's nibble in the per-group uint64 (see packed24.h).
constexpr int meta_shift(int64_t lane) {
  return int(32 * (lane % 2) + 4 * (lane / 2));
}

uint8_t portable_nibble(const Sparse24& w, int64_t r, int64_t g) {
  return w.nibble(r, g);
}

void set_portable_nibble(Sparse24& w, int64_t r, int64_t g, uint8_t nib) {
  size_t i = size_t(r * w.groups_per_row() + g);
  w.meta[i / 2] = uint8_t(w.meta[i / 2] | (nib << (4 * (i % 2))));
}

// Fills buf with n bytes of `fill`. The buffer comes from the huge-page chunks of weight_memory.h: the GEMV
// kernels stream the packed weights once per call, and on 4 KiB pages the hardware prefetchers stop at every
// page boundary (f32 11008x4096, one thread, with and without huge pages: M = 1 2.94-3.01 -> 2.72 ms, M = 8
// 3.27-3.29 -> 2.95 ms), and a panel GEMM walks the page tables for every slice of weights it reads from
// memory (see weight_memory.h).
void assign_zeroed(WeightBytes& buf, size_t n, std::byte fill = std::byte{0}) {
  buf.clear();
  buf.assign(n, fill);
}

}  // namespace

Packed24 pack_24(const Sparse24& w, const std::vector<float>& scales) {
  if (w.layout != Layout24::portable) fail("pack_24: the weight must be in the portable layout");
  if (w.dtype != DType::f32 && w.dtype != DType::bf16 && w.dtype != DType::i8)
    fail("pack_24: CPU kernels take f32, bf16 or i8 values, not {}", dtype_name(w.dtype));
  if (w.cols % 4 != 0 || w.rows <= 0 || w.cols <= 0)
    fail("pack_24: weight shape [{}, {}] is not a 2:4 shape", w.rows, w.cols);
  if (!scales.empty() && w.dtype != DType::i8) fail("pack_24: scales apply to i8 weights only");
  if (!scales.empty() && int64_t(scales.size()) != w.rows)
    fail("pack_24: {} scales given for {} output channels", scales.size(), w.rows);

  Packed24 p;
  p.dtype = w.dtype;
  p.rows = w.rows;
  p.cols = w.cols;
  p.tiles = (w.rows + kTileRows - 1) / kTileRows;
  const int64_t G = w.groups_per_row();
  const size_t esize = dtype_size(w.dtype);
  if (w.dtype != DType::i8) {
    p.steps = G;
    assign_zeroed(p.values, size_t(p.tiles * G * 2 * kTileRows) * esize);
    assign_zeroed(p.meta, size_t(p.tiles * G) * 8);
    for (int64_t r = 0; r < w.rows; ++r) {
      const int64_t t = r / kTileRows, lane = r % kTileRows;
      for (int64_t g = 0; g < G; ++g) {
        for (int j = 0; j < 2; ++j)
          std::memcpy(p.values.data() + size_t(((t * G + g) * 2 + j) * kTileRows + lane) * esize,
                      w.values.data() + size_t(r * 2 * G + 2 * g + j) * esize, esize);
        uint64_t bits;
        std::byte* m = p.meta.data() + size_t(t * G + g) * 8;
        std::memcpy(&bits, m, 8);
        bits |= uint64_t(portable_nibble(w, r, g)) << meta_shift(lane);
        std::memcpy(m, &bits, 8);
      }
    }
    return p;
  }

  const int64_t P = (G + 1) / 2;
  p.steps = P;
  assign_zeroed(p.values, size_t(p.tiles * P * kTileRows * 4));
  // Padding groups keep the legal pair (0, 1) with zero values.
  assign_zeroed(p.meta, size_t(p.tiles * P * kTileRows), std::byte{0x44});
  p.row_sums.assign(size_t(p.tiles * kTileRows), 0);
  p.scales.assign(size_t(p.tiles * kTileRows), 1.0f);
  const int8_t* v = w.value_data<int8_t>();
  for (int64_t r = 0; r < w.rows; ++r) {
    const int64_t t = r / kTileRows, lane = r % kTileRows;
    int32_t sum = 0;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t pair = g / 2, half = g % 2;
      const size_t step = size_t((t * P + pair) * kTileRows + lane);
      for (int j = 0; j < 2; ++j) {
        int8_t x = v[r * 2 * G + 2 * g + j];
        p.values[step * 4 + size_t(half * 2 + j)] = std::byte(uint8_t(x));
        sum += x;
      }
      uint8_t& meta = reinterpret_cast<uint8_t&>(p.meta[step]);
      meta = uint8_t((meta & (half ? 0x0f : 0xf0)) | (portable_nibble(w, r, g) << (4 * half)));
    }
    p.row_sums[size_t(r)] = sum;
    if (!scales.empty()) p.scales[size_t(r)] = scales[size_t(r)];
  }
  return p;
}

Sparse24 unpack_24(const Packed24& p) {
  Sparse24 w;
  w.dtype = p.dtype;
  w.rows = p.rows;
  w.cols = p.cols;
  w.layout = Layout24::portable;
  const int64_t G = w.groups_per_row();
  const size_t esize = dtype_size(p.dtype);
  w.values.assign(size_t(w.rows * 2 * G) * esize, std::byte{0});
  w.meta.assign(size_t((w.rows * G + 1) / 2), 0);
  for (int64_t r = 0; r < w.rows; ++r) {
    const int64_t t = r / kTileRows, lane = r % kTileRows;
    for (int64_t g = 0; g < G; ++g) {
      uint8_t nib;
      if (p.dtype != DType::i8) {
        for (int j = 0; j < 2; ++j)
          std::memcpy(w.values.data() + size_t(r * 2 * G + 2 * g + j) * esize,
                      p.values.data() + size_t(((t * G + g) * 2 + j) * kTileRows + lane) * esize, esize);
        uint64_t bits;
        std::memcpy(&bits, p.meta.data() + size_t(t * G + g) * 8, 8);
        nib = uint8_t((bits >> meta_shift(lane)) & 0xf);
      } else {
        const int64_t pair = g / 2, half = g % 2;
        const size_t step = size_t((t * p.steps + pair) * kTileRows + lane);
        for (int j = 0; j < 2; ++j)
          w.values[size_t(r * 2 * G + 2 * g + j)] = p.values[step * 4 + size_t(half * 2 + j)];
        nib = uint8_t((uint8_t(p.meta[step]) >> (4 * half)) & 0xf);
      }
      set_portable_nibble(w, r, g, nib);
    }
  }
  return w;
}

}  // namespace sparse24::cpu
