#include "kernels/cuda/sp24_pack.h"

#include <cstring>

#include "format/nvidia_layout.h"
#include "util/error.h"

namespace sparse24::cuda {

int64_t sp24_step_elements(DType dtype) {
  switch (dtype) {
    case DType::f16:
    case DType::bf16:
      return 32;
    case DType::i8:
      return 64;
    default:
      fail("the mma.sp kernels take f16, bf16 or i8 weights, not {}", dtype_name(dtype));
  }
}

namespace {

// The portable weight grown to [n_padded][k_padded]: zero values, and nibble 0x4 (kept positions 0 and 1,
// both zero) in every padded group, so the padding is a legal 2:4 group that contributes nothing.
Sparse24 pad_portable(const Sparse24& w, int64_t n_padded, int64_t k_padded) {
  const size_t elem = dtype_size(w.dtype);
  Sparse24 p;
  p.dtype = w.dtype;
  p.rows = n_padded;
  p.cols = k_padded;
  p.layout = Layout24::portable;
  p.values.assign(size_t(n_padded * k_padded / 2) * elem, std::byte{0});
  p.meta.assign(size_t(n_padded * k_padded / 8), 0x44);
  for (int64_t r = 0; r < w.rows; ++r) {
    std::memcpy(p.values.data() + size_t(r * k_padded / 2) * elem,
                w.values.data() + size_t(r * w.cols / 2) * elem, size_t(w.cols / 2) * elem);
    for (int64_t g = 0; g < w.groups_per_row(); ++g) {
      size_t i = size_t(r * (k_padded / 4) + g);
      uint8_t& byte = p.meta[i / 2];
      byte = uint8_t((byte & ~(0xf << (4 * (i % 2)))) | (w.nibble(r, g) << (4 * (i % 2))));
    }
  }
  return p;
}

// Calls fn(packed_offset, row, row_byte) for every 4-byte register slot of the fragment order: the slot at
// packed_offset holds bytes row_byte..row_byte+3 of compressed row `row` (padded coordinates).
template <typename Fn>
void for_each_fragment_slot(int64_t n_padded, int64_t steps, Fn&& fn) {
  constexpr int64_t kRowBytesPerStep = kSp24StepBytes / 2;
  for (int64_t tile = 0; tile < n_padded / kSp24RowTile; ++tile)
    for (int64_t step = 0; step < steps; ++step)
      for (int half = 0; half < 2; ++half)
        for (int lane = 0; lane < 32; ++lane)
          for (int reg = 0; reg < 4; ++reg) {
            Sp24FragmentSource src = sp24_fragment_source(lane, reg);
            int64_t row = tile * kSp24RowTile + half * 16 + src.row;
            int64_t row_byte = step * kRowBytesPerStep + src.byte;
            fn(sp24_fragment_offset(tile, step, steps, half, lane) + reg * 4, row, row_byte);
          }
}

}  // namespace

Sp24PackedWeight pack_sp24_weight(const Sparse24& w) {
  if (w.layout != Layout24::portable) fail("pack_sp24_weight expects the portable layout");
  const int64_t step_elems = sp24_step_elements(w.dtype);
  if (w.rows <= 0 || w.cols <= 0 || w.cols % 4 != 0)
    fail("pack_sp24_weight: weight {} x {} is empty or K is not a multiple of 4", w.rows, w.cols);
  Sp24PackedWeight out;
  out.dtype = w.dtype;
  out.n = w.rows;
  out.k = w.cols;
  out.n_padded = (w.rows + kSp24RowTile - 1) / kSp24RowTile * kSp24RowTile;
  out.k_padded = (w.cols + step_elems - 1) / step_elems * step_elems;
  Sparse24 nv = to_nvidia_layout(pad_portable(w, out.n_padded, out.k_padded));
  out.meta = std::move(nv.meta);

  const int64_t row_bytes = out.k_padded / 2 * int64_t(dtype_size(w.dtype));
  const auto* src = reinterpret_cast<const uint8_t*>(nv.values.data());
  out.values.resize(nv.values.size());
  for_each_fragment_slot(out.n_padded, out.steps(), [&](int64_t dst, int64_t row, int64_t row_byte) {
    std::memcpy(out.values.data() + dst, src + row * row_bytes + row_byte, 4);
  });
  return out;
}

Sparse24 unpack_sp24_weight(const Sp24PackedWeight& packed) {
  const int64_t row_bytes = packed.k_padded / 2 * int64_t(dtype_size(packed.dtype));
  if (packed.values.size() != size_t(packed.n_padded * row_bytes))
    fail("unpack_sp24_weight: {} value bytes, expected {}", packed.values.size(),
         packed.n_padded * row_bytes);
  Sparse24 nv;
  nv.dtype = packed.dtype;
  nv.rows = packed.n_padded;
  nv.cols = packed.k_padded;
  nv.layout = Layout24::nvidia_sm80;
  nv.meta = packed.meta;
  nv.values.resize(packed.values.size());
  auto* dst = reinterpret_cast<uint8_t*>(nv.values.data());
  for_each_fragment_slot(packed.n_padded, packed.steps(), [&](int64_t src, int64_t row, int64_t row_byte) {
    std::memcpy(dst + row * row_bytes + row_byte, packed.values.data() + src, 4);
  });
  Sparse24 padded = from_nvidia_layout(nv);

  // Drop the padding.
  const size_t elem = dtype_size(packed.dtype);
  Sparse24 out;
  out.dtype = packed.dtype;
  out.rows = packed.n;
  out.cols = packed.k;
  out.layout = Layout24::portable;
  out.values.resize(size_t(packed.n * packed.k / 2) * elem);
  out.meta.assign(size_t((packed.n * packed.k / 4 + 1) / 2), 0);  // as compress_24 sizes it
  for (int64_t r = 0; r < packed.n; ++r) {
    std::memcpy(out.values.data() + size_t(r * packed.k / 2) * elem,
                padded.values.data() + size_t(r * packed.k_padded / 2) * elem, size_t(packed.k / 2) * elem);
    for (int64_t g = 0; g < packed.k / 4; ++g) {
      size_t i = size_t(r * (packed.k / 4) + g);
      out.meta[i / 2] |= uint8_t(padded.nibble(r, g) << (4 * (i % 2)));
    }
  }
  return out;
}

}  // namespace sparse24::cuda
