// Ops that move, select or relabel elements without arithmetic, plus Cast and the constant producers. All of
// them work on every dtype by copying elements as bytes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "util/error.h"

namespace sparse24::engine::ops {

namespace {

Tensor int64_tensor(const std::vector<int64_t>& values) {
  Tensor t(DType::i64, {int64_t(values.size())});
  if (!values.empty()) std::memcpy(t.bytes(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

// Axes for Unsqueeze/Squeeze: an attribute before opset 13, the optional second input from 13 on.
std::optional<std::vector<int64_t>> axes_attr_or_input(const Node& node, std::span<const Tensor* const> in) {
  if (node.opset < 13) {
    if (!node.attrs.has("axes")) return std::nullopt;
    return node.attrs.get_ints("axes");
  }
  const Tensor* a = optional_input(in, 1);
  if (!a) return std::nullopt;
  return read_int_list(node, *a, "axes");
}

}  // namespace

void run_identity(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  out[0] = required_input(node, in, 0);
}

void run_dropout(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  // Opset 12+ takes ratio and training_mode as inputs; opsets 7-11 are inference-only; before 7, is_test=0
  // asked for training.
  bool training = node.opset < 7 && node.attrs.get_int("is_test", 0) == 0;
  float ratio = node.attrs.get_float("ratio", 0.5f);
  if (node.opset >= 12) {
    if (const Tensor* r = optional_input(in, 1)) {
      if (r->numel() != 1) fail("node '{}' (Dropout): ratio must be a scalar", node.name);
      ratio = r->get(0);
    }
    if (const Tensor* t = optional_input(in, 2)) {
      if (t->numel() != 1) fail("node '{}' (Dropout): training_mode must be a scalar", node.name);
      training = t->get(0) != 0.0f;
    }
  }
  // Training with ratio 0 drops nothing, so it is the identity as well; a random mask is not reproducible.
  if (training && ratio != 0.0f)
    fail("node '{}' (Dropout): training mode with ratio {} (random masks) is not supported", node.name,
         ratio);
  out[0] = x;
  if (out.size() > 1) {
    out[1] = Tensor(DType::boolean, x.shape());
    if (out[1].nbytes()) std::memset(out[1].bytes(), 1, out[1].nbytes());
  }
}

void run_flatten(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  const int64_t axis_attr = node.attrs.get_int("axis", 1);
  // axis may equal the rank (everything goes to the first dim).
  const int axis = axis_attr == x.rank() ? x.rank() : normalize_axis(node, axis_attr, x.rank());
  out[0] = x.reshaped({dims_product(x.shape(), 0, axis), dims_product(x.shape(), axis, x.rank())});
}

std::vector<int64_t> reshape_target(const Node& node, const std::vector<int64_t>& in_shape,
                                    std::vector<int64_t> shape) {
  const bool allowzero = node.attrs.get_int("allowzero", 0) != 0;
  const int64_t numel = shape_numel(in_shape);
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0 && !allowzero) {
      if (i >= in_shape.size())
        fail("node '{}' (Reshape): shape[{}] = 0 copies a dim the input (rank {}) lacks", node.name, i,
             in_shape.size());
      shape[i] = in_shape[i];
    }
    if (shape[i] == -1) {
      if (infer >= 0) fail("node '{}' (Reshape): more than one -1 in shape", node.name);
      infer = int(i);
    } else if (shape[i] < 0) {
      fail("node '{}' (Reshape): invalid dim {} in shape", node.name, shape[i]);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      fail("node '{}' (Reshape): cannot infer the -1 dim: {} elements into {}", node.name, numel,
           shape_str(shape));
    shape[size_t(infer)] = numel / known;
  }
  if (shape_numel(shape) != numel)
    fail("node '{}' (Reshape): cannot reshape {} ({} elements) to {}", node.name, shape_str(in_shape), numel,
         shape_str(shape));
  return shape;
}

void run_reshape(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  out[0] =
      x.reshaped(reshape_target(node, x.shape(), read_int_list(node, required_input(node, in, 1), "shape")));
}

namespace {

// dst[c][r] = src[r][c] for one tile [r0, r1) x [c0, c1) of a [rows][cols] block.
template <typename T>
void transpose_tile(const T* src, int64_t rows, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                    T* dst) {
  if (r1 - r0 == 3) {  // an RGB image's three planes into pixels: the row loop unrolled
    for (int64_t c = c0; c < c1; ++c) {
      dst[c * rows + r0] = src[r0 * cols + c];
      dst[c * rows + r0 + 1] = src[(r0 + 1) * cols + c];
      dst[c * rows + r0 + 2] = src[(r0 + 2) * cols + c];
    }
    return;
  }
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t r = r0; r < r1; ++r) dst[c * rows + r] = src[r * cols + c];
}

// A permutation that keeps the leading `a` axes and swaps the two runs of axes after them, [.., B.., C..] ->
// [.., C.., B..], is a transpose of [B][C] blocks (the element-by-element path below took 4 us for the demo
// CNN's [1][7][7][32] -> [1][32][7][7]). Returns false, doing nothing, for any other permutation.
bool transpose_as_blocks(const Tensor& x, const std::vector<int64_t>& perm, Tensor& y) {
  const int rank = x.rank();
  int a = 0;
  while (a < rank && perm[size_t(a)] == a) ++a;
  if (a >= rank - 1) return false;
  const int64_t b = perm[size_t(a)];  // the first axis of the second run, now first
  if (b <= a) return false;
  for (int i = a; i < rank; ++i) {
    const int64_t want = i - a < rank - b ? b + (i - a) : a + (i - a - (rank - b));
    if (perm[size_t(i)] != want) return false;
  }
  const int64_t outer = dims_product(x.shape(), 0, a), rows = dims_product(x.shape(), a, int(b)),
                cols = dims_product(x.shape(), int(b), rank);
  // Square tiles, so that both sides stay in cache lines, split over the team tile by tile (a batch-1 image
  // is one block: ResNet's 3x224x224 input into pixels took 115 us on one thread). Blocks of few rows (an
  // image's channels) take tiles wider than they are tall.
  constexpr int64_t kTile = 16;
  const int64_t tile_cols = rows < kTile ? kTile * kTile / std::max<int64_t>(rows, 1) : kTile;
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + tile_cols - 1) / tile_cols;
  const auto run = [&](auto type_tag) {
    using T = decltype(type_tag);
    const T* src = reinterpret_cast<const T*>(x.bytes());
    T* dst = reinterpret_cast<T*>(y.bytes());
    parallel_for(outer * row_tiles * col_tiles, x.numel() >= kParallelMinElements, [&](int64_t tile) {
      const int64_t o = tile / (row_tiles * col_tiles), rt = tile / col_tiles % row_tiles,
                    ct = tile % col_tiles;
      transpose_tile(src + o * rows * cols, rows, cols, rt * kTile, std::min(rows, (rt + 1) * kTile),
                     ct * tile_cols, std::min(cols, (ct + 1) * tile_cols), dst + o * rows * cols);
    });
  };
  switch (dtype_size(x.dtype())) {
    case 1:
      run(uint8_t{});
      return true;
    case 2:
      run(uint16_t{});
      return true;
    case 4:
      run(uint32_t{});
      return true;
    case 8:
      run(uint64_t{});
      return true;
    default:
      return false;
  }
}

}  // namespace

void run_transpose(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  const int rank = x.rank();
  std::vector<int64_t> perm = node.attrs.get_ints("perm");
  if (perm.empty())
    for (int i = rank - 1; i >= 0; --i) perm.push_back(i);
  if (int(perm.size()) != rank)
    fail("node '{}' (Transpose): perm has {} entries for rank {}", node.name, perm.size(), rank);
  std::vector<bool> seen(size_t(rank), false);
  std::vector<int64_t> out_shape(static_cast<size_t>(rank)), src_strides(static_cast<size_t>(rank));
  const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
  for (int i = 0; i < rank; ++i) {
    const int p = normalize_axis(node, perm[size_t(i)], rank);
    perm[size_t(i)] = p;
    if (seen[size_t(p)]) fail("node '{}' (Transpose): perm repeats axis {}", node.name, p);
    seen[size_t(p)] = true;
    out_shape[size_t(i)] = x.shape()[size_t(p)];
    src_strides[size_t(i)] = in_strides[size_t(p)];
  }
  // A permutation that only moves dims of size 1 keeps every element in place (NCHW -> NHWC with C = 1): the
  // output is the input's copy under the new shape.
  int64_t last = -1;
  bool in_order = true;
  for (int i = 0; i < rank && in_order; ++i) {
    const int64_t p = perm[size_t(i)];
    if (x.shape()[size_t(p)] == 1) continue;
    in_order = p > last;
    last = p;
  }
  if (in_order) {
    out[0] = x.reshaped(out_shape);
    return;
  }
  out[0] = Tensor::uninitialized(x.dtype(), out_shape);
  if (x.numel() == 0) return;
  // Trailing axes rotated ([outer][B][C] -> [outer][C][B], as NHWC <-> NCHW): a 2-D transpose of each block.
  if (transpose_as_blocks(x, perm, out[0])) return;
  // The output is written in order; each of its rows reads the input at a stride (a block copy when the last
  // axis stays last). Rows are independent, so they split across threads.
  const size_t es = dtype_size(x.dtype());
  const int64_t inner = rank ? out_shape.back() : 1, inner_stride = rank ? src_strides.back() : 1;
  const int64_t rows = x.numel() / inner;
  const std::byte* src = x.bytes();
  std::byte* dst = out[0].bytes();
  parallel_for(rows, x.numel() >= kParallelMinElements, [&](int64_t r) {
    int64_t off = 0, rest = r;
    for (int d = rank - 2; d >= 0; --d) {
      off += (rest % out_shape[size_t(d)]) * src_strides[size_t(d)];
      rest /= out_shape[size_t(d)];
    }
    std::byte* y = dst + size_t(r * inner) * es;
    if (inner_stride == 1) {
      std::memcpy(y, src + size_t(off) * es, size_t(inner) * es);
    } else {
      for (int64_t i = 0; i < inner; ++i)
        std::memcpy(y + size_t(i) * es, src + size_t(off + i * inner_stride) * es, es);
    }
  });
}

void run_concat(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& first = required_input(node, in, 0);
  const int rank = first.rank();
  if (!node.attrs.has("axis")) fail("node '{}' (Concat): attribute 'axis' is required", node.name);
  const int axis = normalize_axis(node, node.attrs.get_int("axis", 0), rank);
  std::vector<int64_t> shape = first.shape();
  shape[size_t(axis)] = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = required_input(node, in, i);
    bool ok = t.dtype() == first.dtype() && t.rank() == rank;
    for (int d = 0; ok && d < rank; ++d) ok = d == axis || t.shape()[size_t(d)] == first.shape()[size_t(d)];
    if (!ok)
      fail("node '{}' (Concat): input {} is {} {}, which does not match input 0 ({} {}) outside axis {}",
           node.name, i, dtype_name(t.dtype()), shape_str(t.shape()), dtype_name(first.dtype()),
           shape_str(first.shape()), axis);
    shape[size_t(axis)] += t.shape()[size_t(axis)];
  }
  out[0] = Tensor(first.dtype(), shape);
  const size_t es = dtype_size(first.dtype());
  const int64_t outer = dims_product(shape, 0, axis), inner = dims_product(shape, axis + 1, rank);
  const size_t out_row = size_t(shape[size_t(axis)] * inner) * es;
  size_t col = 0;
  for (const Tensor* t : in) {
    const size_t row = size_t(t->shape()[size_t(axis)] * inner) * es;
    if (row > 0)  // an empty piece has no storage to copy from
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(out[0].bytes() + size_t(o) * out_row + col, t->bytes() + size_t(o) * row, row);
    col += row;
  }
}

void run_unsqueeze(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  auto axes = axes_attr_or_input(node, in);
  if (!axes) fail("node '{}' (Unsqueeze): axes are required", node.name);
  const int rank = x.rank() + int(axes->size());
  std::vector<bool> inserted(size_t(rank), false);
  for (int64_t a : *axes) {
    int ax = normalize_axis(node, a, rank);
    if (inserted[size_t(ax)]) fail("node '{}' (Unsqueeze): axis {} is repeated", node.name, a);
    inserted[size_t(ax)] = true;
  }
  std::vector<int64_t> shape;
  size_t src = 0;
  for (int i = 0; i < rank; ++i) shape.push_back(inserted[size_t(i)] ? 1 : x.shape()[src++]);
  out[0] = x.reshaped(shape);
}

void run_squeeze(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  auto axes = axes_attr_or_input(node, in);
  std::vector<bool> drop(size_t(x.rank()), false);
  if (!axes) {
    for (int i = 0; i < x.rank(); ++i) drop[size_t(i)] = x.shape()[size_t(i)] == 1;
  } else {
    for (int64_t a : *axes) {
      int ax = normalize_axis(node, a, x.rank());
      if (x.shape()[size_t(ax)] != 1)
        fail("node '{}' (Squeeze): axis {} has size {}, not 1", node.name, a, x.shape()[size_t(ax)]);
      drop[size_t(ax)] = true;
    }
  }
  std::vector<int64_t> shape;
  for (int i = 0; i < x.rank(); ++i)
    if (!drop[size_t(i)]) shape.push_back(x.shape()[size_t(i)]);
  out[0] = x.reshaped(shape);
}

void run_shape(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  const int64_t rank = x.rank();
  auto clamp = [&](int64_t v) { return std::clamp(v < 0 ? v + rank : v, int64_t(0), rank); };
  const int64_t start = clamp(node.attrs.get_int("start", 0));
  const int64_t end = clamp(node.attrs.get_int("end", rank));
  std::vector<int64_t> dims;
  for (int64_t i = start; i < end; ++i) dims.push_back(x.shape()[size_t(i)]);
  out[0] = int64_tensor(dims);
}

void run_slice(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  const int rank = x.rank();
  std::vector<int64_t> starts, ends, axes, steps;
  if (node.opset < 10) {
    starts = node.attrs.get_ints("starts");
    ends = node.attrs.get_ints("ends");
    axes = node.attrs.get_ints("axes");
  } else {
    starts = read_int_list(node, required_input(node, in, 1), "starts");
    ends = read_int_list(node, required_input(node, in, 2), "ends");
    if (const Tensor* a = optional_input(in, 3)) axes = read_int_list(node, *a, "axes");
    if (const Tensor* s = optional_input(in, 4)) steps = read_int_list(node, *s, "steps");
  }
  const size_t n = starts.size();
  if (axes.empty())
    for (size_t i = 0; i < n; ++i) axes.push_back(int64_t(i));
  if (steps.empty()) steps.assign(n, 1);
  if (ends.size() != n || axes.size() != n || steps.size() != n)
    fail("node '{}' (Slice): starts, ends, axes and steps have different lengths", node.name);
  std::vector<int64_t> begin(size_t(rank), 0), step(size_t(rank), 1), shape = x.shape();
  std::vector<bool> seen(size_t(rank), false);
  for (size_t i = 0; i < n; ++i) {
    const int ax = normalize_axis(node, axes[i], rank);
    if (seen[size_t(ax)]) fail("node '{}' (Slice): axis {} is repeated", node.name, axes[i]);
    seen[size_t(ax)] = true;
    const int64_t dim = x.shape()[size_t(ax)], st = steps[i];
    if (st == 0) fail("node '{}' (Slice): step 0", node.name);
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    // Clamping per the ONNX spec: [0, dim] going forward, [-1, dim - 1] going backward.
    if (st > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      shape[size_t(ax)] = e > s ? (e - s + st - 1) / st : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      shape[size_t(ax)] = s > e ? (s - e - st - 1) / -st : 0;
    }
    begin[size_t(ax)] = s;
    step[size_t(ax)] = st;
  }
  out[0] = Tensor(x.dtype(), shape);
  const int64_t total = out[0].numel();
  if (total == 0) return;
  const std::vector<int64_t> strides = contiguous_strides(x.shape());
  const size_t es = dtype_size(x.dtype());
  const int64_t inner = rank ? shape.back() : 1;
  const int64_t inner_step = rank ? step.back() * strides.back() : 1;
  int64_t base = 0;
  for (int d = 0; d < rank; ++d) base += begin[size_t(d)] * strides[size_t(d)];
  const std::byte* src = x.bytes();
  std::byte* dst = out[0].bytes();
  for (int64_t r = 0, rows = total / inner; r < rows; ++r) {
    int64_t off = base, rest = r;
    for (int d = rank - 2; d >= 0; --d) {
      off += (rest % shape[size_t(d)]) * step[size_t(d)] * strides[size_t(d)];
      rest /= shape[size_t(d)];
    }
    std::byte* y = dst + size_t(r * inner) * es;
    if (inner_step == 1)
      std::memcpy(y, src + size_t(off) * es, size_t(inner) * es);
    else
      for (int64_t i = 0; i < inner; ++i)
        std::memcpy(y + size_t(i) * es, src + size_t(off + i * inner_step) * es, es);
  }
}

void run_gather(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& data = required_input(node, in, 0);
  const Tensor& idx_t = required_input(node, in, 1);
  if (data.rank() == 0) fail("node '{}' (Gather): data is a scalar", node.name);
  const int axis = normalize_axis(node, node.attrs.get_int("axis", 0), data.rank());
  std::vector<int64_t> indices = read_int_list(node, idx_t, "indices");
  const int64_t dim = data.shape()[size_t(axis)];
  for (int64_t& i : indices) {
    if (i < -dim || i >= dim)
      fail("node '{}' (Gather): index {} is out of range for axis {} of size {}", node.name, i, axis, dim);
    if (i < 0) i += dim;
  }
  std::vector<int64_t> shape(data.shape().begin(), data.shape().begin() + axis);
  shape.insert(shape.end(), idx_t.shape().begin(), idx_t.shape().end());
  shape.insert(shape.end(), data.shape().begin() + axis + 1, data.shape().end());
  out[0] = Tensor(data.dtype(), shape);
  const size_t es = dtype_size(data.dtype());
  const int64_t outer = dims_product(data.shape(), 0, axis);
  const size_t block = size_t(dims_product(data.shape(), axis + 1, data.rank())) * es;
  const int64_t count = int64_t(indices.size());
  if (out[0].numel() == 0) return;
  const std::byte* src = data.bytes();
  std::byte* dst = out[0].bytes();
  parallel_for(outer, out[0].numel() >= kParallelMinElements, [&](int64_t o) {
    for (int64_t j = 0; j < count; ++j)
      std::memcpy(dst + size_t(o * count + j) * block, src + size_t(o * dim + indices[size_t(j)]) * block,
                  block);
  });
}

namespace {

// Element conversion for Cast: floats to integers truncate toward zero (as C and onnxruntime do), saturating
// where the value does not fit instead of invoking undefined behaviour; NaN becomes 0.
template <typename I>
I float_to_int(double v) {
  if (std::isnan(v)) return 0;
  if (v <= double(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (v >= double(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return I(v);
}

// Reads element i as (is_integer, integer value, floating value).
struct Scalar {
  bool integral;
  int64_t i;
  double f;
};

Scalar load(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::f32:
      return {false, 0, t.data<float>()[i]};
    case DType::f16:
      return {false, 0, f16_to_f32(t.data<uint16_t>()[i])};
    case DType::bf16:
      return {false, 0, bf16_to_f32(t.data<uint16_t>()[i])};
    case DType::i8:
      return {true, t.data<int8_t>()[i], 0};
    case DType::i32:
      return {true, t.data<int32_t>()[i], 0};
    case DType::i64:
      return {true, t.data<int64_t>()[i], 0};
    case DType::boolean:
      return {true, t.data<uint8_t>()[i] != 0, 0};
  }
  return {true, 0, 0};
}

void store(Tensor& t, int64_t i, Scalar v) {
  const double f = v.integral ? double(v.i) : v.f;
  switch (t.dtype()) {
    case DType::f32:
      t.data<float>()[i] = v.integral ? float(v.i) : float(v.f);
      break;
    case DType::f16:
      t.data<uint16_t>()[i] = f32_to_f16(v.integral ? float(v.i) : float(v.f));
      break;
    case DType::bf16:
      t.data<uint16_t>()[i] = f32_to_bf16(v.integral ? float(v.i) : float(v.f));
      break;
    // Integer to narrower integer wraps (two's complement), as numpy and onnxruntime do.
    case DType::i8:
      t.data<int8_t>()[i] = v.integral ? int8_t(v.i) : float_to_int<int8_t>(f);
      break;
    case DType::i32:
      t.data<int32_t>()[i] = v.integral ? int32_t(v.i) : float_to_int<int32_t>(f);
      break;
    case DType::i64:
      t.data<int64_t>()[i] = v.integral ? v.i : float_to_int<int64_t>(f);
      break;
    case DType::boolean:
      t.data<uint8_t>()[i] = v.integral ? v.i != 0 : f != 0.0;
      break;
  }
}

}  // namespace

Tensor cast_tensor(const Tensor& x, DType to) {
  if (x.dtype() == to) return x;
  Tensor y(to, x.shape());
  const int64_t n = x.numel();
  parallel_for(n, n >= kParallelMinElements, [&](int64_t i) { store(y, i, load(x, i)); });
  return y;
}

void run_cast(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  const int64_t to = node.attrs.get_int("to", 0);
  auto dtype = dtype_from_onnx(int32_t(to));
  if (!dtype)
    fail("node '{}' (Cast): target type {} is not supported", node.name, onnx_type_name(int32_t(to)));
  out[0] = cast_tensor(x, *dtype);
}

void run_constant(const Node& node, std::span<const Tensor* const>, std::span<Tensor> out) {
  const Attributes& a = node.attrs;
  if (const Tensor* t = a.get_tensor("value")) {
    out[0] = *t;
  } else if (a.has("value_float")) {
    out[0] = Tensor(DType::f32, {});
    out[0].data<float>()[0] = a.get_float("value_float", 0.0f);
  } else if (a.has("value_floats")) {
    std::vector<float> v = a.get_floats("value_floats");
    out[0] = Tensor(DType::f32, {int64_t(v.size())});
    std::copy(v.begin(), v.end(), out[0].data<float>());
  } else if (a.has("value_int")) {
    out[0] = int64_tensor({a.get_int("value_int", 0)});
    out[0] = out[0].reshaped({});
  } else if (a.has("value_ints")) {
    out[0] = int64_tensor(a.get_ints("value_ints"));
  } else {
    std::string names;
    for (const auto& [name, v] : a.all()) names += (names.empty() ? "" : ", ") + name;
    fail("node '{}' (Constant): attribute {} is not supported (value, value_float(s), value_int(s) are)",
         node.name, names.empty() ? "(none)" : names);
  }
}

void run_constant_of_shape(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  std::vector<int64_t> shape = read_int_list(node, required_input(node, in, 0), "shape");
  for (int64_t d : shape)
    if (d < 0) fail("node '{}' (ConstantOfShape): negative dim {} in shape", node.name, d);
  const Tensor* value = node.attrs.get_tensor("value");
  if (value && value->numel() != 1)
    fail("node '{}' (ConstantOfShape): value must hold one element", node.name);
  out[0] = Tensor(value ? value->dtype() : DType::f32, shape);
  if (!value) return;  // zero-filled f32
  const size_t es = dtype_size(value->dtype());
  std::byte* dst = out[0].bytes();
  for (int64_t i = 0, n = out[0].numel(); i < n; ++i) std::memcpy(dst + size_t(i) * es, value->bytes(), es);
}

void run_expand(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  std::vector<int64_t> target = read_int_list(node, required_input(node, in, 1), "shape");
  out[0] = broadcast_to(x, broadcast_shapes(node, {&x.shape(), &target}));
}

}  // namespace sparse24::engine::ops
