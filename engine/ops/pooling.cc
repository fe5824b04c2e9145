// Max and average pooling over 1, 2 or 3 spatial dims, and global average pooling.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "util/error.h"

namespace sparse24::engine::ops {

namespace {

// Pools run on three spatial dims; 1-D and 2-D inputs get leading dims of size 1 (kernel 1, no padding).
struct Pool3 {
  std::array<int64_t, 3> in, k, s, d, pb, pe, out;
};

Pool3 to_pool3(const WindowGeometry& g) {
  Pool3 p;
  const int lead = 3 - g.rank();
  for (int i = 0; i < 3; ++i) {
    const bool real = i >= lead;
    const size_t j = size_t(real ? i - lead : 0);
    p.in[size_t(i)] = real ? g.in[j] : 1;
    p.k[size_t(i)] = real ? g.kernel[j] : 1;
    p.s[size_t(i)] = real ? g.strides[j] : 1;
    p.d[size_t(i)] = real ? g.dilations[j] : 1;
    p.pb[size_t(i)] = real ? g.pads_begin[j] : 0;
    p.pe[size_t(i)] = real ? g.pads_end[j] : 0;
    p.out[size_t(i)] = real ? g.out[j] : 1;
  }
  return p;
}

struct PoolSetup {
  WindowGeometry geometry;
  Pool3 p;
  std::vector<int64_t> out_shape;
  int64_t planes = 0;  // batch · channels
};

PoolSetup setup_pool(const Node& node, const Tensor& x) {
  require_dtype(node, x, {DType::f32}, "input X");
  const int spatial = x.rank() - 2;
  if (spatial < 1 || spatial > 3)
    fail("node '{}' ({}): input has shape {}; 1-D, 2-D and 3-D pooling (rank 3 to 5) are supported",
         node.name, node.op, shape_str(x.shape()));
  std::vector<int64_t> kernel = node.attrs.get_ints("kernel_shape");
  if (int(kernel.size()) != spatial)
    fail("node '{}' ({}): kernel_shape has {} values for {} spatial dims", node.name, node.op, kernel.size(),
         spatial);
  PoolSetup s;
  s.geometry = window_geometry(node, {x.shape().begin() + 2, x.shape().end()}, kernel, true);
  s.p = to_pool3(s.geometry);
  s.out_shape = {x.dim(0), x.dim(1)};
  s.out_shape.insert(s.out_shape.end(), s.geometry.out.begin(), s.geometry.out.end());
  s.planes = x.dim(0) * x.dim(1);
  return s;
}

// Calls f(input offset within the plane, h index, w index) for each window tap inside the input.
template <typename F>
void for_each_tap(const Pool3& p, int64_t o0, int64_t o1, int64_t o2, F f) {
  const int64_t b0 = o0 * p.s[0] - p.pb[0], b1 = o1 * p.s[1] - p.pb[1], b2 = o2 * p.s[2] - p.pb[2];
  for (int64_t k0 = 0; k0 < p.k[0]; ++k0) {
    const int64_t i0 = b0 + k0 * p.d[0];
    if (i0 < 0 || i0 >= p.in[0]) continue;
    for (int64_t k1 = 0; k1 < p.k[1]; ++k1) {
      const int64_t i1 = b1 + k1 * p.d[1];
      if (i1 < 0 || i1 >= p.in[1]) continue;
      for (int64_t k2 = 0; k2 < p.k[2]; ++k2) {
        const int64_t i2 = b2 + k2 * p.d[2];
        if (i2 < 0 || i2 >= p.in[2]) continue;
        f((i0 * p.in[1] + i1) * p.in[2] + i2, i0, i1, i2);
      }
    }
  }
}

// Taps of one window along one dim that fall before `limit` (the input end, or the end of the padding).
int64_t taps_before(int64_t begin, int64_t kernel, int64_t dilation, int64_t lo, int64_t limit) {
  int64_t n = 0;
  for (int64_t k = 0; k < kernel; ++k) {
    int64_t i = begin + k * dilation;
    n += i >= lo && i < limit;
  }
  return n;
}

// Max pooling of one plane when every window lies inside the input (no padding reached, dilation 1): the
// common CNN case (2x2 / 3x3, stride 2). Straight loops without per-tap bounds checks; NaN-free inputs give the
// same result as the general loop.
bool max_pool_plane_inside(const Pool3& p, const float* xs, float* ys) {
  for (int i = 0; i < 3; ++i)
    if (p.d[size_t(i)] != 1 || p.pb[size_t(i)] != 0 || (p.out[size_t(i)] - 1) * p.s[size_t(i)] + p.k[size_t(i)] > p.in[size_t(i)])
      return false;
  for (int64_t o0 = 0; o0 < p.out[0]; ++o0)
    for (int64_t o1 = 0; o1 < p.out[1]; ++o1) {
      float* y = ys + (o0 * p.out[1] + o1) * p.out[2];
      for (int64_t o2 = 0; o2 < p.out[2]; ++o2) y[o2] = -std::numeric_limits<float>::infinity();
      for (int64_t k0 = 0; k0 < p.k[0]; ++k0)
        for (int64_t k1 = 0; k1 < p.k[1]; ++k1) {
          const float* row = xs + ((o0 * p.s[0] + k0) * p.in[1] + o1 * p.s[1] + k1) * p.in[2];
          for (int64_t k2 = 0; k2 < p.k[2]; ++k2)
            for (int64_t o2 = 0; o2 < p.out[2]; ++o2) y[o2] = std::max(y[o2], row[o2 * p.s[2] + k2]);
        }
    }
  return true;
}

}  // namespace

void run_max_pool(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  PoolSetup s = setup_pool(node, x);
  const Pool3& p = s.p;
  const int64_t storage_order = node.attrs.get_int("storage_order", 0);
  out[0] = Tensor(DType::f32, s.out_shape);
  int64_t* indices = nullptr;
  if (out.size() > 1) indices = (out[1] = Tensor(DType::i64, s.out_shape)).data<int64_t>();
  const int64_t in_plane = p.in[0] * p.in[1] * p.in[2], out_plane = p.out[0] * p.out[1] * p.out[2];
  const float* src = x.data<float>();
  float* dst = out[0].data<float>();
#pragma omp parallel for if (out[0].numel() * p.k[0] * p.k[1] * p.k[2] >= kParallelMinElements)
  for (int64_t plane = 0; plane < s.planes; ++plane) {
    const float* xs = src + plane * in_plane;
    if (!indices && max_pool_plane_inside(p, xs, dst + plane * out_plane)) continue;
    int64_t o = plane * out_plane;
    for (int64_t o0 = 0; o0 < p.out[0]; ++o0)
      for (int64_t o1 = 0; o1 < p.out[1]; ++o1)
        for (int64_t o2 = 0; o2 < p.out[2]; ++o2, ++o) {
          float best = -std::numeric_limits<float>::infinity();
          int64_t best_index = -1;
          for_each_tap(p, o0, o1, o2, [&](int64_t off, int64_t i0, int64_t i1, int64_t i2) {
            if (xs[off] > best || best_index < 0) {
              best = xs[off];
              // storage_order 1 numbers the spatial positions column-major (first dim fastest).
              best_index = storage_order == 0 ? off : i0 + p.in[0] * (i1 + p.in[1] * i2);
            }
          });
          dst[o] = best;
          if (indices) indices[o] = plane * in_plane + std::max<int64_t>(best_index, 0);
        }
  }
}

void run_average_pool(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  PoolSetup s = setup_pool(node, x);
  const Pool3& p = s.p;
  const bool count_include_pad = node.attrs.get_int("count_include_pad", 0) != 0;
  out[0] = Tensor(DType::f32, s.out_shape);
  const int64_t in_plane = p.in[0] * p.in[1] * p.in[2], out_plane = p.out[0] * p.out[1] * p.out[2];
  const float* src = x.data<float>();
  float* dst = out[0].data<float>();
#pragma omp parallel for if (out[0].numel() * p.k[0] * p.k[1] * p.k[2] >= kParallelMinElements)
  for (int64_t plane = 0; plane < s.planes; ++plane) {
    const float* xs = src + plane * in_plane;
    int64_t o = plane * out_plane;
    for (int64_t o0 = 0; o0 < p.out[0]; ++o0)
      for (int64_t o1 = 0; o1 < p.out[1]; ++o1)
        for (int64_t o2 = 0; o2 < p.out[2]; ++o2, ++o) {
          float sum = 0;
          for_each_tap(p, o0, o1, o2, [&](int64_t off, int64_t, int64_t, int64_t) { sum += xs[off]; });
          // The divisor counts the taps inside the input, or (count_include_pad) also those on the explicit
          // padding, never those past it (a ceil_mode window can overhang the padding).
          const int64_t b[3] = {o0 * p.s[0] - p.pb[0], o1 * p.s[1] - p.pb[1], o2 * p.s[2] - p.pb[2]};
          int64_t count = 1;
          for (int i = 0; i < 3; ++i)
            count *= count_include_pad ? taps_before(b[i], p.k[i], p.d[i], -p.pb[i], p.in[i] + p.pe[i])
                                       : taps_before(b[i], p.k[i], p.d[i], 0, p.in[i]);
          dst[o] = count ? sum / float(count) : 0.0f;
        }
  }
}

void run_global_average_pool(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  require_dtype(node, x, {DType::f32}, "input X");
  if (x.rank() < 2)
    fail("node '{}' (GlobalAveragePool): input has rank {}, expected >= 2", node.name, x.rank());
  std::vector<int64_t> shape = {x.dim(0), x.dim(1)};
  shape.resize(size_t(x.rank()), 1);
  out[0] = Tensor(DType::f32, shape);
  const int64_t planes = x.dim(0) * x.dim(1), n = dims_product(x.shape(), 2, x.rank());
  const float* src = x.data<float>();
  float* dst = out[0].data<float>();
#pragma omp parallel for if (x.numel() >= kParallelMinElements)
  for (int64_t plane = 0; plane < planes; ++plane) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += src[plane * n + i];
    dst[plane] = float(sum / double(n));
  }
}

}  // namespace sparse24::engine::ops
