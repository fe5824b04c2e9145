#include "engine/ops/conv_direct.h"

#include <omp.h>

#include <algorithm>
#include <array>

#include "engine/ops/conv_direct_impl.h"
#include "engine/ops/op_util.h"
#include "util/error.h"

namespace sparse24::engine::ops {
namespace {

// The portable build of the loop nest: one channel per "vector", a·b + c rounded twice like the reference
// (the engine compiles without FMA contraction).
struct Scalar {
  using reg = float;
  static constexpr int64_t lanes = 1;
  static reg zero() { return 0.0f; }
  static reg load(const float* p) { return *p; }
  static reg broadcast(const float* p) { return *p; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static reg add(reg a, reg b) { return a + b; }
  static reg relu(reg a) { return a < 0.0f ? 0.0f : a; }
  static reg min(reg a, reg b) { return a < b ? a : b; }
  static void store(float* p, reg r, int64_t n) {
    if (n > 0) *p = r;
  }
};

void conv_direct_rows_portable(const DirectConvArgs& a, int64_t row0, int64_t row1) {
  direct_conv_rows<Scalar, 16>(a, row0, row1);
}

}  // namespace

DirectConvWeights direct_conv_weights(const Tensor& canonical, const std::vector<float>& bias,
                                      reference::Activation act) {
  using reference::Activation;
  if (canonical.dtype() != DType::f32 || canonical.rank() != 2 || canonical.dim(1) > kDirectConvMaxK)
    fail("direct convolution: weight {} {} is not f32 [OC][K <= {}]", dtype_name(canonical.dtype()),
         shape_str(canonical.shape()), kDirectConvMaxK);
  if (act != Activation::none && act != Activation::relu && act != Activation::relu6)
    fail("direct convolution: its kernels apply no activation but ReLU and ReLU6");
  DirectConvWeights d;
  d.oc = canonical.dim(0);
  d.k = canonical.dim(1);
  d.oc_pad = (d.oc + 63) / 64 * 64;
  d.relu = act != Activation::none;
  d.relu6 = act == Activation::relu6;
  d.w.assign(size_t(d.k * d.oc_pad), 0.0f);
  d.bias.assign(size_t(d.oc_pad), 0.0f);
  const float* w = canonical.data<float>();
  for (int64_t o = 0; o < d.oc; ++o)
    for (int64_t k = 0; k < d.k; ++k) d.w[size_t(k * d.oc_pad + o)] = w[o * d.k + k];
  std::copy(bias.begin(), bias.end(), d.bias.begin());
  return d;
}

bool direct_conv_applies(const ConvShape& s) {
  return s.window.rank() == 2 && s.groups == 1 && s.K() <= kDirectConvMaxK;
}

void conv_direct_nhwc(const DirectConvWeights& w, const ConvShape& shape, int64_t pool_h, int64_t pool_w,
                      const float* x, float* y, cpu::Isa isa) {
  if (!direct_conv_applies(shape) || w.k != shape.K() || w.oc != shape.out_channels || pool_h < 1 ||
      pool_w < 1)
    fail("direct convolution: geometry (K {}, {} outputs) does not match its weight (K {}, {} outputs)",
         shape.K(), shape.out_channels, w.k, w.oc);
  const WindowGeometry& g = shape.window;
  const int64_t N = shape.batch, C = shape.in_channels, H = g.in[0], W = g.in[1];
  DirectConvArgs a;
  a.PH = g.out[0] / pool_h, a.PW = g.out[1] / pool_w;
  const int64_t rows = N * a.PH;
  if (rows == 0 || a.PW == 0) return;
  // The input with its padding made real (a small tensor: C <= 32), so no tap needs a bounds check.
  a.Hp = g.pads_begin[0] + H + g.pads_end[0], a.Wp = g.pads_begin[1] + W + g.pads_end[1];
  a.x = x;
  static thread_local std::vector<float> padded;
  if (a.Hp != H || a.Wp != W) {
    padded.assign(size_t(N * a.Hp * a.Wp * C), 0.0f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h)
        std::copy_n(x + (n * H + h) * W * C, W * C,
                    padded.data() + ((n * a.Hp + h + g.pads_begin[0]) * a.Wp + g.pads_begin[1]) * C);
    a.x = padded.data();
  }
  a.C = C, a.stride_h = g.strides[0], a.stride_w = g.strides[1];
  // The offsets live on the stack (K <= kDirectConvMaxK; SmallBuffer for the pool window): the stem runs in
  // microseconds, and a few small allocations per call showed in its time.
  std::array<int64_t, kDirectConvMaxK> k_offset;
  SmallBuffer<int64_t, 64> pool_buffer(size_t(pool_h * pool_w));
  int64_t* pool = pool_buffer.data();
  int64_t k = 0;
  for (int64_t kh = 0; kh < g.kernel[0]; ++kh)
    for (int64_t kw = 0; kw < g.kernel[1]; ++kw)
      for (int64_t c = 0; c < C; ++c)
        k_offset[size_t(k++)] = (kh * g.dilations[0] * a.Wp + kw * g.dilations[1]) * C + c;
  for (int64_t i = 0; i < pool_h; ++i)
    for (int64_t j = 0; j < pool_w; ++j) pool[i * pool_w + j] = (i * a.stride_h * a.Wp + j * a.stride_w) * C;
  a.k = k, a.k_offset = k_offset.data();
  a.pool_h = pool_h, a.pool_w = pool_w, a.pool_offset = pool;
  a.w = w.w.data(), a.bias = w.bias.data(), a.y = y;
  a.oc = w.oc, a.oc_pad = w.oc_pad, a.relu = w.relu, a.relu6 = w.relu6;
  auto* run = conv_direct_rows_portable;
  switch (isa) {
    case cpu::Isa::avx512:
      run = conv_direct_rows_avx512;
      break;
    case cpu::Isa::avx2:
      run = conv_direct_rows_avx2;
      break;
    case cpu::Isa::ref:
      break;
  }
  const int64_t macs = rows * a.PW * pool_h * pool_w * w.k * w.oc;
  if (rows <= 1 || macs < (int64_t(1) << 16)) return run(a, 0, rows);  // no team of one (parallel_for)
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    run(a, rows * t / T, rows * (t + 1) / T);
  }
}

}  // namespace sparse24::engine::ops
