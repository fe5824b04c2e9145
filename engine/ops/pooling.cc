// Max and average pooling over 1, 2 or 3 spatial dims, and global average pooling.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "util/error.h"

namespace sparse24::engine::ops {

namespace {

// Pools run on three spatial dims; 1-D and 2-D inputs get leading dims of size 1 (kernel 1, no padding).

struct PoolSetup {
  WindowGeometry geometry;
  Window3 p;
  std::vector<int64_t> out_shape;
  int64_t planes = 0;  // batch · channels
};

// Geometry for an input of shape x_shape ([N][C][in...]).
PoolSetup setup_pool(const Node& node, const std::vector<int64_t>& x_shape) {
  const int spatial = int(x_shape.size()) - 2;
  if (spatial < 1 || spatial > 3)
    fail("node '{}' ({}): input has shape {}; 1-D, 2-D and 3-D pooling (rank 3 to 5) are supported",
         node.name, node.op, shape_str(x_shape));
  std::vector<int64_t> kernel = node.attrs.get_ints("kernel_shape");
  if (int(kernel.size()) != spatial)
    fail("node '{}' ({}): kernel_shape has {} values for {} spatial dims", node.name, node.op, kernel.size(),
         spatial);
  PoolSetup s;
  s.geometry = window_geometry(node, {x_shape.begin() + 2, x_shape.end()}, kernel, true);
  s.p = to_window3(s.geometry);
  s.out_shape = {x_shape[0], x_shape[1]};
  s.out_shape.insert(s.out_shape.end(), s.geometry.out.begin(), s.geometry.out.end());
  s.planes = x_shape[0] * x_shape[1];
  return s;
}

PoolSetup setup_pool(const Node& node, const Tensor& x) {
  require_dtype(node, x, {DType::f32}, "input X");
  return setup_pool(node, x.shape());
}

// Per spatial dim and output position: the window's first input index and the range [lo, hi) of kernel taps
// that land inside the input, so that the pooling loops run without bounds checks.
struct TapRanges {
  std::array<std::vector<int64_t>, 3> begin, lo, hi;
};

// One window's entry of TapRanges: along dim i, output o's first input index and its taps [lo, hi) inside.
void window_taps(const Window3& p, size_t i, int64_t o, int64_t& begin, int64_t& lo, int64_t& hi) {
  begin = o * p.s[i] - p.pb[i];
  lo = 0, hi = p.k[i];
  while (lo < hi && begin + lo * p.d[i] < 0) ++lo;
  while (hi > lo && begin + (hi - 1) * p.d[i] >= p.in[i]) --hi;
}

TapRanges tap_ranges(const Window3& p) {
  TapRanges r;
  for (size_t i = 0; i < 3; ++i)
    for (int64_t o = 0; o < p.out[i]; ++o) {
      int64_t b, lo, hi;
      window_taps(p, i, o, b, lo, hi);
      r.begin[i].push_back(b);
      r.lo[i].push_back(lo);
      r.hi[i].push_back(hi);
    }
  return r;
}

// Taps of one window along one dim that fall in [lo, limit): the input (lo = 0, limit = its size) or the
// input with its explicit padding.
int64_t taps_within(int64_t begin, int64_t kernel, int64_t dilation, int64_t lo, int64_t limit) {
  int64_t n = 0;
  for (int64_t k = 0; k < kernel; ++k) {
    int64_t i = begin + k * dilation;
    n += i >= lo && i < limit;
  }
  return n;
}

// MaxPool with its Indices output: output by output, remembering where the maximum was.
void max_pool_with_indices(const Window3& p, const TapRanges& t, int64_t planes, int64_t storage_order,
                           const float* src, float* dst, int64_t* indices) {
  const int64_t in_plane = p.in[0] * p.in[1] * p.in[2], out_plane = p.out[0] * p.out[1] * p.out[2];
  parallel_for(
      planes, planes * out_plane * p.k[0] * p.k[1] * p.k[2] >= kParallelMinElements, [&](int64_t plane) {
        const float* xs = src + plane * in_plane;
        int64_t o = plane * out_plane;
        for (int64_t o0 = 0; o0 < p.out[0]; ++o0)
          for (int64_t o1 = 0; o1 < p.out[1]; ++o1)
            for (int64_t o2 = 0; o2 < p.out[2]; ++o2, ++o) {
              float best = -std::numeric_limits<float>::infinity();
              int64_t best_off = -1;
              for (int64_t k0 = t.lo[0][size_t(o0)]; k0 < t.hi[0][size_t(o0)]; ++k0) {
                const int64_t i0 = t.begin[0][size_t(o0)] + k0 * p.d[0];
                for (int64_t k1 = t.lo[1][size_t(o1)]; k1 < t.hi[1][size_t(o1)]; ++k1) {
                  const int64_t row = (i0 * p.in[1] + t.begin[1][size_t(o1)] + k1 * p.d[1]) * p.in[2] +
                                      t.begin[2][size_t(o2)];
                  for (int64_t k2 = t.lo[2][size_t(o2)]; k2 < t.hi[2][size_t(o2)]; ++k2) {
                    const float v = xs[row + k2 * p.d[2]];
                    if (v > best || best_off < 0) {
                      best = v;
                      best_off = row + k2 * p.d[2];
                    }
                  }
                }
              }
              dst[o] = best;
              {
                int64_t index = std::max<int64_t>(best_off, 0);
                // storage_order 1: the spatial position numbered column-major (first dim fastest)
                if (storage_order != 0) {
                  const int64_t i2 = index % p.in[2], i1 = (index / p.in[2]) % p.in[1],
                                i0 = index / (p.in[2] * p.in[1]);
                  index = i0 + p.in[0] * (i1 + p.in[1] * i2);
                }
                indices[o] = plane * in_plane + index;
              }
            }
      });
}

// Pools a plane one output row at a time: each tap updates, in one pass, every output of the row whose input
// column it reaches, a run the compiler vectorises. Each output still sees its taps in (k0, k1, k2) order,
// so sums come out as a per-output loop would give them. Max pooling starts from -inf, average from 0.
template <bool kMax>
void pool_rows(const Window3& p, const TapRanges& t, int64_t planes, const float* src, float* dst) {
  std::vector<int64_t> lo2, hi2,
      shift2;  // per k2: outputs [lo, hi) whose input column o2·s + shift is inside
  for (int64_t k2 = 0; k2 < p.k[2]; ++k2) {
    const int64_t shift = k2 * p.d[2] - p.pb[2];
    int64_t lo = 0, hi = p.out[2];
    while (lo < hi && lo * p.s[2] + shift < 0) ++lo;
    while (hi > lo && (hi - 1) * p.s[2] + shift >= p.in[2]) --hi;
    lo2.push_back(lo);
    hi2.push_back(hi);
    shift2.push_back(shift);
  }
  const int64_t in_plane = p.in[0] * p.in[1] * p.in[2], out_plane = p.out[0] * p.out[1] * p.out[2];
  const int64_t s2 = p.s[2];
  parallel_for(
      planes, planes * out_plane * p.k[0] * p.k[1] * p.k[2] >= kParallelMinElements, [&](int64_t plane) {
        const float* xs = src + plane * in_plane;
        for (int64_t o0 = 0; o0 < p.out[0]; ++o0)
          for (int64_t o1 = 0; o1 < p.out[1]; ++o1) {
            float* y = dst + plane * out_plane + (o0 * p.out[1] + o1) * p.out[2];
            for (int64_t o2 = 0; o2 < p.out[2]; ++o2)
              y[o2] = kMax ? -std::numeric_limits<float>::infinity() : 0.0f;
            for (int64_t k0 = t.lo[0][size_t(o0)]; k0 < t.hi[0][size_t(o0)]; ++k0) {
              const int64_t i0 = t.begin[0][size_t(o0)] + k0 * p.d[0];
              for (int64_t k1 = t.lo[1][size_t(o1)]; k1 < t.hi[1][size_t(o1)]; ++k1) {
                const float* line = xs + (i0 * p.in[1] + t.begin[1][size_t(o1)] + k1 * p.d[1]) * p.in[2];
                for (int64_t k2 = 0; k2 < p.k[2]; ++k2) {
                  const float* x = line + shift2[size_t(k2)];
                  const int64_t lo = lo2[size_t(k2)], hi = hi2[size_t(k2)];
                  if constexpr (kMax) {
                    if (s2 == 1)
                      for (int64_t o2 = lo; o2 < hi; ++o2) y[o2] = x[o2] > y[o2] ? x[o2] : y[o2];
                    else
                      for (int64_t o2 = lo; o2 < hi; ++o2) y[o2] = x[o2 * s2] > y[o2] ? x[o2 * s2] : y[o2];
                  } else {
                    if (s2 == 1)
                      for (int64_t o2 = lo; o2 < hi; ++o2) y[o2] += x[o2];
                    else
                      for (int64_t o2 = lo; o2 < hi; ++o2) y[o2] += x[o2 * s2];
                  }
                }
              }
            }
          }
      });
}

}  // namespace

namespace {

// MaxPool (kMax) or AveragePool on channels-last x [N][in...][C] -> y [N][out...][C]: every output pixel is
// the lane-wise max or sum of the input pixels under its window, whole channel rows at a time (an average
// then divided by the same count as run_average_pool's, so both layouts give the same bits). Each window's
// taps inside the input are found in place: per-call tables (tap_ranges) cost more than the pool itself on
// a small image (the demo's CNN, 14x14x32 -> 7x7x32: 2.4 us, most of it allocating and freeing them).
template <bool kMax>
void pool_channels_last(const Node& node, const Tensor& x, Tensor& y) {
  require_dtype(node, x, {DType::f32}, "input X");
  const std::vector<int64_t> nchw = channels_first_shape(x.shape());
  const PoolSetup s = setup_pool(node, nchw);
  const Window3& p = s.p;
  const int64_t C = nchw[1], batch = nchw[0];
  const bool count_include_pad = !kMax && node.attrs.get_int("count_include_pad", 0) != 0;
  y = Tensor::uninitialized(DType::f32, channels_last_shape(s.out_shape));
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  const int64_t rows = batch * p.out[0] * p.out[1];
  parallel_for(rows, y.numel() >= kParallelMinElements, [&](int64_t row) {
    const int64_t n = row / (p.out[0] * p.out[1]), o0 = row / p.out[1] % p.out[0], o1 = row % p.out[1];
    int64_t b[3], lo[3], hi[3];
    window_taps(p, 0, o0, b[0], lo[0], hi[0]);
    window_taps(p, 1, o1, b[1], lo[1], hi[1]);
    // The window's input pixels inside the input.
    SmallBuffer<const float*, 64> taps_buffer(size_t(p.k[0] * p.k[1] * p.k[2]));
    const float** tap = taps_buffer.data();
    for (int64_t o2 = 0; o2 < p.out[2]; ++o2) {
      window_taps(p, 2, o2, b[2], lo[2], hi[2]);
      int64_t taps = 0;
      for (int64_t k0 = lo[0]; k0 < hi[0]; ++k0)
        for (int64_t k1 = lo[1]; k1 < hi[1]; ++k1)
          for (int64_t k2 = lo[2]; k2 < hi[2]; ++k2) {
            const int64_t i0 = b[0] + k0 * p.d[0], i1 = b[1] + k1 * p.d[1], i2 = b[2] + k2 * p.d[2];
            tap[taps++] = src + (((n * p.in[0] + i0) * p.in[1] + i1) * p.in[2] + i2) * C;
          }
      float* out = dst + ((row * p.out[2]) + o2) * C;
      if constexpr (kMax) {
        max_taps_f32(tap, taps, C, out);
      } else {
        sum_taps_f32(tap, taps, C, out);
        float count = 1.0f;
        for (size_t i = 0; i < 3; ++i)
          count *= float(count_include_pad ? taps_within(b[i], p.k[i], p.d[i], -p.pb[i], p.in[i] + p.pe[i])
                                           : hi[i] - lo[i]);
        for (int64_t c = 0; c < C; ++c) out[c] = count > 0.0f ? out[c] / count : 0.0f;
      }
    }
  });
}

}  // namespace

void max_pool_bands_nhwc(const float* y, int64_t OH, int64_t OW, int64_t C, int64_t pool_h, int64_t pool_w,
                         int64_t band_begin, int64_t band_end, float* out) {
  const int64_t PH = OH / pool_h, PW = OW / pool_w;
  for (int64_t band = band_begin; band < band_end; ++band) {
    const int64_t n = band / PH, ph = band % PH;
    const float* rows = y + (n * OH + ph * pool_h) * OW * C;  // the window rows' first pixel
    for (int64_t pw = 0; pw < PW; ++pw) {
      float* o = out + (band * PW + pw) * C;
      const float* first = rows + pw * pool_w * C;
      // From -inf, as run_max_pool: a NaN input is passed over the same way.
      std::fill_n(o, C, -std::numeric_limits<float>::infinity());
      for (int64_t i = 0; i < pool_h; ++i)
        for (int64_t j = 0; j < pool_w; ++j) {
          const float* x = first + (i * OW + j) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] = x[c] > o[c] ? x[c] : o[c];
        }
    }
  }
}

void run_max_pool(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  if (channels_last(node)) {
    if (out.size() > 1) fail("node '{}' (MaxPool): channels-last pooling has no Indices output", node.name);
    return pool_channels_last<true>(node, x, out[0]);
  }
  PoolSetup s = setup_pool(node, x);
  const int64_t storage_order = node.attrs.get_int("storage_order", 0);
  out[0] = Tensor(DType::f32, s.out_shape);
  const TapRanges taps = tap_ranges(s.p);
  if (out.size() > 1) {
    out[1] = Tensor(DType::i64, s.out_shape);
    max_pool_with_indices(s.p, taps, s.planes, storage_order, x.data<float>(), out[0].data<float>(),
                          out[1].data<int64_t>());
  } else {
    pool_rows<true>(s.p, taps, s.planes, x.data<float>(), out[0].data<float>());
  }
}

void run_average_pool(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  if (channels_last(node)) return pool_channels_last<false>(node, x, out[0]);
  PoolSetup s = setup_pool(node, x);
  const Window3& p = s.p;
  const bool count_include_pad = node.attrs.get_int("count_include_pad", 0) != 0;
  out[0] = Tensor(DType::f32, s.out_shape);
  const TapRanges t = tap_ranges(p);
  // The divisor counts the taps inside the input, or (count_include_pad) also those on the explicit padding,
  // never those past it (a ceil_mode window can overhang the padding); it factors over the dims.
  std::array<std::vector<float>, 3> counts;
  for (size_t i = 0; i < 3; ++i)
    for (int64_t o = 0; o < p.out[i]; ++o)
      counts[i].push_back(float(
          count_include_pad ? taps_within(t.begin[i][size_t(o)], p.k[i], p.d[i], -p.pb[i], p.in[i] + p.pe[i])
                            : t.hi[i][size_t(o)] - t.lo[i][size_t(o)]));
  float* dst = out[0].data<float>();
  pool_rows<false>(p, t, s.planes, x.data<float>(), dst);
  const int64_t out_plane = p.out[0] * p.out[1] * p.out[2];
  parallel_for(s.planes, out[0].numel() >= kParallelMinElements, [&](int64_t plane) {
    int64_t o = plane * out_plane;
    for (int64_t o0 = 0; o0 < p.out[0]; ++o0)
      for (int64_t o1 = 0; o1 < p.out[1]; ++o1)
        for (int64_t o2 = 0; o2 < p.out[2]; ++o2, ++o) {
          const float count = counts[0][size_t(o0)] * counts[1][size_t(o1)] * counts[2][size_t(o2)];
          dst[o] = count > 0.0f ? dst[o] / count : 0.0f;
        }
  });
}

void run_global_average_pool(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  require_dtype(node, x, {DType::f32}, "input X");
  if (x.rank() < 2)
    fail("node '{}' (GlobalAveragePool): input has rank {}, expected >= 2", node.name, x.rank());
  if (channels_last(node)) {  // [N][in...][C] -> [N][C][1...], the same bytes as [N][1...][C]
    const int64_t C = x.dim(-1), n = dims_product(x.shape(), 1, x.rank() - 1);
    std::vector<int64_t> shape = {x.dim(0), C};
    shape.resize(size_t(x.rank()), 1);
    out[0] = Tensor::uninitialized(DType::f32, shape);
    const float* src = x.data<float>();
    float* dst = out[0].data<float>();
    parallel_for(x.dim(0), x.numel() >= kParallelMinElements, [&](int64_t b) {
      std::vector<double> sum(size_t(C), 0.0);
      double* acc = sum.data();
      for (int64_t i = 0; i < n; ++i) {
        const float* row = src + (b * n + i) * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) acc[c] += row[c];
      }
      for (int64_t c = 0; c < C; ++c) dst[b * C + c] = float(sum[size_t(c)] / double(n));
    });
    return;
  }
  std::vector<int64_t> shape = {x.dim(0), x.dim(1)};
  shape.resize(size_t(x.rank()), 1);
  out[0] = Tensor(DType::f32, shape);
  const int64_t planes = x.dim(0) * x.dim(1), n = dims_product(x.shape(), 2, x.rank());
  const float* src = x.data<float>();
  float* dst = out[0].data<float>();
  // Each plane's sum in several double lanes at once: one running sum was one dependent addition per
  // element (a [1][64][14][14] input took 5 us).
  parallel_for(planes, x.numel() >= kParallelMinElements, [&](int64_t plane) {
    const float* p = src + plane * n;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += double(p[i]);
    dst[plane] = float(sum / double(n));
  });
}

}  // namespace sparse24::engine::ops
