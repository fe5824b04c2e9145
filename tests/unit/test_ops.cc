// Engine ops on the cases the ONNX node tests do not reach: broadcasting corners, the im2col order
// (K = (kernel position, input channel)) against a direct convolution loop, grouped and dilated Conv, batched
// MatMul broadcasting and the one-row paths, opset-dependent semantics, and errors that name the node.
// Oracles are plain loops written here; data are small integers wherever the result can then be exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <random>

#include "engine/linear.h"
#include "engine/ops/conv_direct.h"
#include "engine/ops/conv_gemm.h"
#include "engine/ops/op.h"
#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "engine/ops/vmath.h"
#include "engine/optimize.h"
#include "graph/weights.h"
#include "kernels/cpu/isa.h"
#include "tests/unit/test_util.h"
#include "util/error.h"

namespace sparse24::engine {
namespace {

using ops::ConvShape;

Node make_node(const std::string& op, int opset = 17) {
  Node n;
  n.name = "node_" + op;
  n.op = op;
  n.opset = opset;
  return n;
}

std::vector<Tensor> run(const Node& node, std::vector<const Tensor*> inputs, size_t outputs = 1) {
  const OpInfo* op = find_op(node.op);
  if (!op) throw std::runtime_error("op not registered: " + node.op);
  std::vector<Tensor> out(outputs);
  op->run(node, inputs, out);
  return out;
}

// A lowered convolution node (lower_conv's), on the canonical weight, with its epilogue and tactic set.
std::shared_ptr<ConvLinearNode> conv_linear_node(const std::vector<int64_t>& onnx_weight_shape,
                                                 const Tensor& wc, const Tensor& bias, Activation act,
                                                 Tactic tactic) {
  auto state = std::make_shared<ConvLinearNode>();
  state->weight_shape = onnx_weight_shape;
  state->source_op = "Conv";
  state->layer = std::make_shared<LinearLayer>(
      wc, std::vector<float>(bias.data<float>(), bias.data<float>() + bias.numel()), act);
  state->layer->set_tactic(tactic);
  return state;
}

// Small integers in [-4, 4]: sums of products stay exact in f32.
Tensor int_valued(DType dtype, std::vector<int64_t> shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(-4, 4);
  Tensor t(dtype, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, float(dist(rng)));
  return t;
}

Tensor i64_tensor(std::vector<int64_t> values, std::vector<int64_t> shape = {}) {
  if (shape.empty()) shape = {int64_t(values.size())};
  Tensor t(DType::i64, shape);
  for (size_t i = 0; i < values.size(); ++i) t.data<int64_t>()[i] = values[i];
  return t;
}

std::vector<int64_t> as_i64(const Tensor& t) {
  return {t.data<int64_t>(), t.data<int64_t>() + t.numel()};
}
std::vector<float> as_f32(const Tensor& t) {
  return {t.data<float>(), t.data<float>() + t.numel()};
}

// Element at a multi-index of the broadcast output, read from `t` with numpy's broadcasting rules.
float broadcast_get(const Tensor& t, const std::vector<int64_t>& out_shape, int64_t flat) {
  std::vector<int64_t> idx(out_shape.size());
  for (int d = int(out_shape.size()) - 1; d >= 0; --d) {
    idx[size_t(d)] = flat % out_shape[size_t(d)];
    flat /= out_shape[size_t(d)];
  }
  int64_t off = 0;
  const size_t lead = out_shape.size() - t.shape().size();
  for (size_t d = 0; d < t.shape().size(); ++d)
    off = off * t.shape()[d] + (t.shape()[d] == 1 ? 0 : idx[lead + d]);
  return t.get(off);
}

void expect_error_names_node(const Node& node, std::vector<const Tensor*> inputs,
                             const std::string& fragment) {
  try {
    run(node, inputs);
    ADD_FAILURE() << node.op << ": expected an Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(node.name), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}

// ---- vectorisable math ----

TEST(OpsVMath, ExpMatchesStdExpToTwoTenthsOfAMillionth) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.5f; x += 0.00731f) {
    const double want = std::exp(double(x));
    worst = std::max(worst, std::fabs(ops::vexp(x) - want) / want);
  }
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(ops::vexp(0.0f), 1.0f);
  EXPECT_EQ(ops::vexp(-200.0f), 0.0f);
  EXPECT_EQ(ops::vexp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(ops::vexp(100.0f), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(ops::vexp(std::nanf(""))));
}

TEST(OpsVMath, ErfMatchesStdErf) {
  double worst = 0;
  for (float x = -6.0f; x <= 6.0f; x += 0.000937f)
    worst = std::max(worst, std::fabs(ops::verf(x) - std::erf(double(x))));
  EXPECT_LT(worst, 3e-7);
  for (float x : {1e-30f, 1e-8f, 1e-4f})  // relative accuracy near zero, where erf(x) ~ 2x/sqrt(pi)
    EXPECT_NEAR(ops::verf(x) / std::erf(double(x)), 1.0, 1e-6) << x;
  EXPECT_EQ(ops::verf(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(ops::verf(-std::numeric_limits<float>::infinity()), -1.0f);
  EXPECT_TRUE(std::isnan(ops::verf(std::nanf(""))));
}

// The kernels are dispatched to an AVX-512, AVX2 or baseline clone; each must give the bits the scalar
// definition gives (no FMA contraction, same math), so results do not depend on the machine.
TEST(OpsVMath, DispatchedKernelsMatchScalarBitForBit) {
  std::vector<float> x;
  for (float v = -9.0f; v <= 9.0f; v += 0.0173f) x.push_back(v);
  std::vector<float> erf(x.size()), gelu(x.size()), sigmoid(x.size());
  ops::erf_f32(x.data(), erf.data(), int64_t(x.size()));
  ops::gelu_f32(x.data(), gelu.data(), int64_t(x.size()));
  ops::sigmoid_f32(x.data(), sigmoid.data(), int64_t(x.size()));
  const float inv_sqrt2 = float(1.0 / std::numbers::sqrt2);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(erf[i], ops::verf(x[i])) << x[i];
    ASSERT_EQ(gelu[i], ops::vgelu(x[i])) << x[i];
    const double exact = 0.5 * double(x[i]) * (1.0 + std::erf(double(x[i]) * inv_sqrt2));
    ASSERT_NEAR(gelu[i], exact, 2e-7 * std::max(1.0, std::fabs(double(x[i])))) << x[i];
    ASSERT_EQ(sigmoid[i], 1.0f / (1.0f + ops::vexp(-x[i]))) << x[i];
  }
}

// The attention softmax row (generic clones, and the AVX-512 kernel where the CPU has it) against softmax in
// double, with no mask, one broadcast mask value, a per-key mask holding the lowest float (padding), and NaN.
TEST(OpsAttentionSoftmax, EveryPathMatchesDoublePrecision) {
  using RowFn = void (*)(float*, const float*, int64_t, int64_t);
  std::vector<std::pair<const char*, RowFn>> paths = {{"generic", ops::attention_softmax_row_f32_generic},
                                                      {"dispatched", ops::attention_softmax_row_f32}};
  if (cpu::cpu_supports(cpu::Isa::avx512)) paths.push_back({"avx512", ops::attention_softmax_row_f32_avx512});
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (const auto& [name, fn] : paths)
    for (int64_t n : {1, 3, 15, 16, 17, 40, 128, 131})
      for (int mask_kind = 0; mask_kind < 3; ++mask_kind) {
        std::vector<float> x(static_cast<size_t>(n)), mask(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          x[size_t(i)] = dist(rng);
          mask[size_t(i)] = mask_kind == 2 && i % 3 == 2 ? std::numeric_limits<float>::lowest() : 0.5f;
        }
        // The kernels add the mask in float; x - max (up to ~40 here) then rounds by up to 2e-6 relative.
        std::vector<double> want(static_cast<size_t>(n));
        double mx = -1e300, sum = 0;
        for (int64_t i = 0; i < n; ++i)
          mx = std::max(mx, double(mask_kind ? x[size_t(i)] + mask[size_t(i)] : x[size_t(i)]));
        for (int64_t i = 0; i < n; ++i)
          sum += want[size_t(i)] =
              std::exp(double(mask_kind ? x[size_t(i)] + mask[size_t(i)] : x[size_t(i)]) - mx);
        std::vector<float> got = x;
        fn(got.data(), mask_kind ? mask.data() : nullptr, mask_kind == 1 ? 0 : 1, n);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_NEAR(got[size_t(i)], want[size_t(i)] / sum, 3e-6 * want[size_t(i)] / sum + 1e-30)
              << name << " n=" << n << " mask " << mask_kind << " i=" << i;
      }
  for (const auto& [name, fn] : paths) {
    std::vector<float> x = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
    fn(x.data(), nullptr, 0, 3);
    for (float v : x) EXPECT_TRUE(std::isnan(v)) << name << ": NaN must spread to the whole row";
  }
}

// ---- broadcasting ----

TEST(OpsBroadcast, AddSubMulDivMatchElementwiseOracle) {
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cases = {
      {{2, 3, 4}, {2, 3, 4}},  // same shape
      {{2, 3, 4}, {4}},        // last dim (a bias)
      {{2, 3, 4}, {}},         // scalar (rank 0)
      {{1}, {2, 3}},           // one-element A
      {{2, 3, 4}, {3, 1}},     // middle dim
      {{4, 1, 5}, {1, 3, 1}},  // both sides broadcast
      {{2, 1, 3, 1}, {5, 1, 2}},
      {{3, 1}, {1, 1, 4}},
  };
  const char* ops[] = {"Add", "Sub", "Mul", "Div"};
  uint32_t seed = 1;
  for (const auto& [sa, sb] : cases)
    for (const char* op : ops) {
      Tensor a = int_valued(DType::f32, sa, seed++), b = int_valued(DType::f32, sb, seed++);
      for (int64_t i = 0; i < b.numel(); ++i)
        if (b.get(i) == 0.0f) b.set(i, 3.0f);  // Div
      Tensor y = run(make_node(op), {&a, &b})[0];
      std::vector<int64_t> shape = y.shape();
      for (int64_t i = 0; i < y.numel(); ++i) {
        const float x = broadcast_get(a, shape, i), z = broadcast_get(b, shape, i);
        const float want = op[0] == 'A' ? x + z : op[0] == 'S' ? x - z : op[0] == 'M' ? x * z : x / z;
        ASSERT_EQ(y.get(i), want) << op << " " << shape_str(sa) << " " << shape_str(sb) << " at " << i;
      }
    }
}

TEST(OpsBroadcast, OutputShapes) {
  Tensor a(DType::f32, {4, 1, 5}), b(DType::f32, {3, 1}), s(DType::f32, {}), e(DType::f32, {0, 5});
  EXPECT_EQ(run(make_node("Add"), {&a, &b})[0].shape(), (std::vector<int64_t>{4, 3, 5}));
  EXPECT_EQ(run(make_node("Add"), {&s, &s})[0].shape(), std::vector<int64_t>{});
  EXPECT_EQ(run(make_node("Mul"), {&e, &s})[0].shape(), (std::vector<int64_t>{0, 5}));
  Tensor big(DType::f32, {1, 1, 1, 7});
  EXPECT_EQ(run(make_node("Sub"), {&s, &big})[0].shape(), (std::vector<int64_t>{1, 1, 1, 7}));
}

TEST(OpsBroadcast, LargeInputsTakeTheParallelPathAndStayExact) {
  Tensor a = int_valued(DType::f32, {64, 33, 40}, 7), b = int_valued(DType::f32, {33, 1}, 8);
  Tensor y = run(make_node("Add"), {&a, &b})[0];
  for (int64_t i = 0; i < y.numel(); i += 97) ASSERT_EQ(y.get(i), a.get(i) + b.get((i / 40) % 33)) << i;
}

TEST(OpsBroadcast, IncompatibleShapesNameTheNode) {
  Tensor a(DType::f32, {2, 3}), b(DType::f32, {4});
  expect_error_names_node(make_node("Add"), {&a, &b}, "do not broadcast");
  Tensor c(DType::boolean, {2, 3});
  expect_error_names_node(make_node("Where"), {&c, &a, &b}, "do not broadcast");
}

TEST(OpsBroadcast, IntegerArithmeticIsExact) {
  const int64_t big = int64_t(1) << 53;  // beyond f32 and f64 integer precision once incremented
  Tensor a = i64_tensor({big + 1, -7, 7, 9}), b = i64_tensor({1, 2, -2, 3});
  EXPECT_EQ(as_i64(run(make_node("Add"), {&a, &b})[0]), (std::vector<int64_t>{big + 2, -5, 5, 12}));
  EXPECT_EQ(as_i64(run(make_node("Mul"), {&a, &b})[0]), (std::vector<int64_t>{big + 1, -14, -14, 27}));
  // Integer division truncates toward zero, as C and onnxruntime do.
  EXPECT_EQ(as_i64(run(make_node("Div"), {&a, &b})[0]), (std::vector<int64_t>{big + 1, -3, -3, 3}));
  // Overflow wraps (two's complement, as numpy) instead of being undefined behaviour.
  Tensor max = i64_tensor({INT64_MAX}), one = i64_tensor({1});
  EXPECT_EQ(as_i64(run(make_node("Add"), {&max, &one})[0]), std::vector<int64_t>{INT64_MIN});
  Tensor base = i64_tensor({10, 2}), exponent = i64_tensor({30, 10});
  EXPECT_EQ(as_i64(run(make_node("Pow"), {&base, &exponent})[0]), (std::vector<int64_t>{INT64_MAX, 1024}));
  Tensor zero = i64_tensor({0});
  expect_error_names_node(make_node("Div"), {&a, &zero}, "division by zero");
}

TEST(OpsBroadcast, WhereAndEqualBroadcastAllOperands) {
  Tensor cond(DType::boolean, {2, 1});
  cond.data<uint8_t>()[0] = 1;
  Tensor x = i64_tensor({1, 2, 3}), y = i64_tensor({-1}, {1, 1});
  Tensor w = run(make_node("Where"), {&cond, &x, &y})[0];
  EXPECT_EQ(w.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(as_i64(w), (std::vector<int64_t>{1, 2, 3, -1, -1, -1}));
  Tensor two = i64_tensor({2}, {1, 1});
  Tensor eq = run(make_node("Equal"), {&x, &two})[0];
  ASSERT_EQ(eq.dtype(), DType::boolean);
  ASSERT_EQ(eq.shape(), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(std::vector<uint8_t>(eq.data<uint8_t>(), eq.data<uint8_t>() + 3),
            (std::vector<uint8_t>{0, 1, 0}));
}

// ---- convolution ----

struct ConvCase {
  std::vector<int64_t> x_shape, w_shape, strides, dilations, pads;
  int64_t group = 1;
  std::string auto_pad = "NOTSET";
};

Node conv_node(const ConvCase& c) {
  Node n = make_node("Conv");
  const size_t sp = c.x_shape.size() - 2;
  n.attrs.set("group", c.group);
  n.attrs.set("strides", c.strides.empty() ? std::vector<int64_t>(sp, 1) : c.strides);
  n.attrs.set("dilations", c.dilations.empty() ? std::vector<int64_t>(sp, 1) : c.dilations);
  if (c.auto_pad != "NOTSET")
    n.attrs.set("auto_pad", c.auto_pad);
  else
    n.attrs.set("pads", c.pads.empty() ? std::vector<int64_t>(2 * sp, 0) : c.pads);
  return n;
}

// Direct convolution, straight from the definition, for any number of spatial dims (geometry from `s`).
Tensor naive_conv(const ConvShape& s, const Tensor& x, const Tensor& w, const Tensor* bias) {
  Tensor y(DType::f32, s.output_shape());
  const auto& g = s.window;
  const int sp = g.rank();
  const int64_t icg = s.in_channels / s.groups, ocg = s.out_channels / s.groups;
  const int64_t kvol = s.kernel_volume(), outp = s.out_pixels(), inp = s.in_pixels();
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oc = 0; oc < s.out_channels; ++oc)
      for (int64_t p = 0; p < outp; ++p) {
        std::vector<int64_t> o(static_cast<size_t>(sp));
        for (int d = sp - 1, r = int(p); d >= 0; --d) {
          o[size_t(d)] = r % g.out[size_t(d)];
          r /= int(g.out[size_t(d)]);
        }
        double acc = bias ? bias->get(oc) : 0.0;
        for (int64_t c = 0; c < icg; ++c)
          for (int64_t kp = 0; kp < kvol; ++kp) {
            int64_t in_off = 0, rest = kp;
            bool inside = true;
            std::vector<int64_t> k(static_cast<size_t>(sp));
            for (int d = sp - 1; d >= 0; --d) {
              k[size_t(d)] = rest % g.kernel[size_t(d)];
              rest /= g.kernel[size_t(d)];
            }
            for (int d = 0; d < sp; ++d) {
              int64_t i = o[size_t(d)] * g.strides[size_t(d)] - g.pads_begin[size_t(d)] +
                          k[size_t(d)] * g.dilations[size_t(d)];
              inside &= i >= 0 && i < g.in[size_t(d)];
              in_off = in_off * g.in[size_t(d)] + i;
            }
            if (!inside) continue;
            const int64_t ic = (oc / ocg) * icg + c;
            acc += double(x.get((n * s.in_channels + ic) * inp + in_off)) * w.get((oc * icg + c) * kvol + kp);
          }
        y.set((n * s.out_channels + oc) * outp + p, float(acc));
      }
  return y;
}

TEST(OpsConv, Im2colOrdersKAsKernelPositionThenInputChannel) {
  // 2 groups of 3 input channels, 2x2 kernel, stride 1, pad 1 on top/left only.
  ConvCase c{{1, 6, 3, 4}, {4, 3, 2, 2}, {1, 1}, {1, 1}, {1, 1, 0, 0}, 2};
  ConvShape s = ops::conv_shape(conv_node(c), c.x_shape, c.w_shape);
  ASSERT_EQ(s.window.out, (std::vector<int64_t>{3, 4}));
  ASSERT_EQ(s.K(), 12);
  // x[0][c][h][w] = 100·c + 10·h + w, stored channels-last as im2col_rows expects.
  std::vector<float> nhwc(6 * 3 * 4);
  for (int64_t ch = 0; ch < 6; ++ch)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t w = 0; w < 4; ++w) nhwc[size_t((h * 4 + w) * 6 + ch)] = float(100 * ch + 10 * h + w);
  for (int64_t group = 0; group < 2; ++group) {
    std::vector<float> patches(size_t(12 * 12), -1.0f);
    ops::im2col_rows(s, nhwc.data(), group, 0, 12, patches.data());
    for (int64_t oh = 0; oh < 3; ++oh)
      for (int64_t ow = 0; ow < 4; ++ow)
        for (int64_t kh = 0; kh < 2; ++kh)
          for (int64_t kw = 0; kw < 2; ++kw)
            for (int64_t ic = 0; ic < 3; ++ic) {
              const int64_t h = oh - 1 + kh, w = ow - 1 + kw, ch = group * 3 + ic;
              const float want = h >= 0 && w >= 0 ? float(100 * ch + 10 * h + w) : 0.0f;
              const int64_t k = (kh * 2 + kw) * 3 + ic;
              ASSERT_EQ(patches[size_t((oh * 4 + ow) * 12 + k)], want)
                  << "group " << group << " out (" << oh << "," << ow << ") k " << k;
            }
  }
}

TEST(OpsConv, CanonicalWeightMatchesGraphWeights) {
  Tensor w = int_valued(DType::f32, {6, 4, 3, 2}, 3);
  WeightSite site;
  site.kind = WeightKind::conv;
  site.shape = w.shape();
  site.N = 6;
  site.K = 4 * 3 * 2;
  site.group_len = 4;
  EXPECT_EQ(as_f32(ops::conv_weight_canonical(w)), as_f32(to_canonical(w, site)));
}

// conv_as_gemm with a plain-loop GEMM (no BLAS) reproduces the direct convolution exactly: this pins the
// contract the planner's 2:4 GEMM relies on (canonical weight rows per group, Y = P · Wcᵀ).
TEST(OpsConv, ConvAsGemmWithPlainGemmMatchesDirectLoop) {
  const std::vector<ConvCase> cases = {
      {{2, 4, 5, 6}, {6, 2, 3, 2}, {2, 1}, {1, 2}, {1, 0, 2, 1}, 2},  // groups, strides, dilations, pads
      {{1, 3, 6, 5}, {6, 1, 3, 3}, {1, 2}, {1, 1}, {1, 1, 1, 1}, 3},  // depthwise with multiplier 2
      {{1, 8, 4, 4}, {4, 8, 1, 1}, {1, 1}, {1, 1}, {}},               // pointwise: no im2col
  };
  uint32_t seed = 11;
  for (const ConvCase& c : cases) {
    Node node = conv_node(c);
    Tensor x = int_valued(DType::f32, c.x_shape, seed++), w = int_valued(DType::f32, c.w_shape, seed++);
    Tensor bias = int_valued(DType::f32, {c.w_shape[0]}, seed++);
    ConvShape s = ops::conv_shape(node, c.x_shape, c.w_shape);
    Tensor wc = ops::conv_weight_canonical(w);
    int calls = 0;
    ops::ConvGemm plain = [&](int64_t group, int64_t M, int64_t N, int64_t K, const float* X, int64_t ldx,
                              float* Y, int64_t ldy) {
      ++calls;
      const float* W = wc.data<float>() + group * N * K;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          float acc = 0;
          for (int64_t k = 0; k < K; ++k) acc += X[m * ldx + k] * W[n * K + k];
          Y[m * ldy + n] = acc;
        }
    };
    Tensor y(DType::f32, s.output_shape());
    ops::conv_as_gemm(s, x.data<float>(), plain, bias.data<float>(), y.data<float>());
    EXPECT_EQ(calls, s.groups);  // one tile, one GEMM per group
    EXPECT_EQ(as_f32(y), as_f32(naive_conv(s, x, w, &bias)))
        << shape_str(c.x_shape) << " " << shape_str(c.w_shape);
  }
}

TEST(OpsConv, ConvOpMatchesDirectLoopAcrossGeometries) {
  const std::vector<ConvCase> cases = {
      {{1, 3, 7, 7}, {4, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},       // 3x3 pad 1
      {{2, 4, 9, 8}, {6, 2, 3, 3}, {2, 2}, {1, 1}, {0, 1, 1, 0}, 2},    // groups, stride, asymmetric pads
      {{1, 4, 10, 10}, {4, 1, 3, 3}, {1, 1}, {2, 3}, {2, 2, 2, 2}, 4},  // depthwise, dilations
      {{2, 3, 9, 7}, {6, 1, 3, 2}, {2, 2}, {1, 1}, {1, 0, 1, 1}, 3},    // depthwise, multiplier 2, strides
      {{2, 8, 5, 5}, {6, 8, 1, 1}, {1, 1}, {1, 1}, {}},                 // pointwise (no im2col)
      {{1, 4, 6, 6}, {8, 2, 1, 1}, {1, 1}, {1, 1}, {}, 2},              // grouped pointwise
      {{1, 2, 7, 5}, {3, 2, 3, 2}, {2, 2}, {1, 1}, {}, 1, "SAME_UPPER"},
      {{1, 2, 7, 5}, {3, 2, 3, 2}, {2, 2}, {1, 1}, {}, 1, "SAME_LOWER"},
      {{1, 2, 7, 5}, {3, 2, 3, 2}, {2, 1}, {1, 1}, {}, 1, "VALID"},
      {{3, 4, 11}, {6, 2, 3}, {2}, {2}, {1, 2}, 2},                                  // 1-D
      {{1, 2, 4, 5, 3}, {3, 2, 2, 3, 2}, {1, 2, 1}, {1, 1, 2}, {1, 0, 0, 0, 1, 1}},  // 3-D
      {{1, 3, 1, 9}, {2, 3, 1, 3}, {1, 3}, {1, 1}, {}},  // a single output row (M = 3)
      {{1, 3, 3, 3}, {2, 3, 3, 3}, {1, 1}, {1, 1}, {}},  // one output pixel (M = 1: sgemv)
  };
  uint32_t seed = 100;
  for (const ConvCase& c : cases) {
    Node node = conv_node(c);
    Tensor x = int_valued(DType::f32, c.x_shape, seed++), w = int_valued(DType::f32, c.w_shape, seed++);
    Tensor bias = int_valued(DType::f32, {c.w_shape[0]}, seed++);
    Tensor y = run(node, {&x, &w, &bias})[0];
    ConvShape s = ops::conv_shape(node, c.x_shape, c.w_shape);
    EXPECT_EQ(as_f32(y), as_f32(naive_conv(s, x, w, &bias)))
        << shape_str(c.x_shape) << " " << shape_str(c.w_shape);
    Tensor y_nobias = run(node, {&x, &w})[0];
    EXPECT_EQ(as_f32(y_nobias), as_f32(naive_conv(s, x, w, nullptr)));
  }
}

TEST(OpsConv, ShapeMismatchNamesTheNode) {
  ConvCase c{{1, 4, 5, 5}, {2, 3, 3, 3}, {}, {}, {}};
  Tensor x(DType::f32, c.x_shape), w(DType::f32, c.w_shape);
  expect_error_names_node(conv_node(c), {&x, &w}, "group=1");
  Tensor x1(DType::f32, {1, 3, 2, 2});
  expect_error_names_node(conv_node(c), {&x1, &w}, "larger than the padded input");
}

// ---- pooling ----

struct PoolCase {
  std::vector<int64_t> kernel, strides, dilations, pads;  // 2-D; pads as {top, left, bottom, right}
  bool ceil_mode = false, count_include_pad = false;
};

// Max or average pooling of one [H][W] plane straight from the definition.
std::vector<float> naive_pool(const PoolCase& c, const float* x, int64_t H, int64_t W, bool max, int64_t& OH,
                              int64_t& OW) {
  int64_t out[2];
  const int64_t in[2] = {H, W};
  for (int i = 0; i < 2; ++i) {
    const int64_t extent = (c.kernel[size_t(i)] - 1) * c.dilations[size_t(i)] + 1;
    const int64_t span = in[i] + c.pads[size_t(i)] + c.pads[size_t(i) + 2] - extent;
    const int64_t s = c.strides[size_t(i)];
    out[i] = (c.ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (c.ceil_mode && (out[i] - 1) * s >= in[i] + c.pads[size_t(i)]) --out[i];
  }
  OH = out[0];
  OW = out[1];
  std::vector<float> y;
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      float best = -INFINITY, sum = 0;
      int64_t inside = 0, padded = 0;
      for (int64_t kh = 0; kh < c.kernel[0]; ++kh)
        for (int64_t kw = 0; kw < c.kernel[1]; ++kw) {
          const int64_t h = oh * c.strides[0] - c.pads[0] + kh * c.dilations[0];
          const int64_t w = ow * c.strides[1] - c.pads[1] + kw * c.dilations[1];
          if (h < H + c.pads[2] && w < W + c.pads[3]) ++padded;
          if (h < 0 || h >= H || w < 0 || w >= W) continue;
          ++inside;
          best = std::max(best, x[h * W + w]);
          sum += x[h * W + w];
        }
      y.push_back(max ? best : sum / float(c.count_include_pad ? padded : inside));
    }
  return y;
}

TEST(OpsPool, MaxAndAverageMatchDirectLoops) {
  const std::vector<PoolCase> cases = {
      {{3, 3}, {2, 2}, {2, 2}, {1, 1, 1, 1}, true, false},
      {{3, 2}, {2, 1}, {2, 1}, {1, 0, 2, 1}, true, true},
      {{2, 3}, {3, 2}, {1, 1}, {0, 1, 1, 0}, false, false},
      {{2, 2}, {2, 2}, {1, 1}, {1, 1, 1, 1}, true, true},
  };
  const int64_t H = 9, W = 8;
  Tensor x = int_valued(DType::f32, {2, 3, H, W}, 71);
  for (const PoolCase& c : cases)
    for (const char* op : {"MaxPool", "AveragePool"}) {
      Node node = make_node(op, 19);
      node.attrs.set("kernel_shape", c.kernel);
      node.attrs.set("strides", c.strides);
      node.attrs.set("dilations", c.dilations);
      node.attrs.set("pads", c.pads);
      node.attrs.set("ceil_mode", int64_t(c.ceil_mode));
      node.attrs.set("count_include_pad", int64_t(c.count_include_pad));
      Tensor y = run(node, {&x})[0];
      int64_t OH = 0, OW = 0;
      for (int64_t plane = 0; plane < 6; ++plane) {
        std::vector<float> want = naive_pool(c, x.data<float>() + plane * H * W, H, W, op[0] == 'M', OH, OW);
        ASSERT_EQ(y.shape(), (std::vector<int64_t>{2, 3, OH, OW})) << op;
        for (int64_t i = 0; i < OH * OW; ++i)
          ASSERT_FLOAT_EQ(y.get(plane * OH * OW + i), want[size_t(i)])
              << op << " plane " << plane << " at " << i;
      }
    }
}

// ---- MatMul and Gemm ----

Tensor naive_matmul_2d(const float* a, const float* b, int64_t M, int64_t K, int64_t N) {
  Tensor y(DType::f32, {M, N});
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += double(a[m * K + k]) * b[k * N + n];
      y.data<float>()[m * N + n] = float(acc);
    }
  return y;
}

// ---- channels-last (optimize.cc's to_channels_last) ----

// [N][C][H][W] -> [N][H][W][C] (to_last), or back.
Tensor move_channels(const Tensor& t, bool to_last) {
  const int64_t N = t.dim(0), C = to_last ? t.dim(1) : t.dim(3);
  const int64_t H = to_last ? t.dim(2) : t.dim(1), W = to_last ? t.dim(3) : t.dim(2);
  Tensor y(DType::f32, to_last ? std::vector<int64_t>{N, H, W, C} : std::vector<int64_t>{N, C, H, W});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H * W; ++i) {
        const int64_t first = (n * C + c) * H * W + i, last = (n * H * W + i) * C + c;
        y.data<float>()[to_last ? last : first] = t.data<float>()[to_last ? first : last];
      }
  return y;
}
Tensor to_nhwc(const Tensor& x) {
  return move_channels(x, true);
}
Tensor to_nchw(const Tensor& y) {
  return move_channels(y, false);
}

TEST(OpsChannelsLast, PoolsMatchTheChannelsFirstOps) {
  // 19 channels: a block of 16 and single ones; 83: blocks of 64 and 16 and single ones (max_taps_f32).
  for (const int64_t channels : {19, 83}) {
    Tensor x = int_valued(DType::f32, {2, channels, 9, 8}, 73);
    // NaN inputs are passed over in both layouts (the windows around them have numbers too).
    x.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
    x.data<float>()[x.numel() - 7] = std::numeric_limits<float>::quiet_NaN();
    const Tensor xl = to_nhwc(x);
    for (const PoolCase& c : std::vector<PoolCase>{{{2, 2}, {2, 2}, {1, 1}, {0, 0, 0, 0}},
                                                   {{3, 3}, {2, 2}, {2, 2}, {1, 1, 1, 1}, true},
                                                   {{3, 2}, {2, 1}, {1, 1}, {1, 0, 2, 1}},
                                                   {{9, 8}, {1, 1}, {1, 1}, {0, 0, 0, 0}}}) {  // 72 taps
      Node node = make_node("MaxPool", 19);
      node.attrs.set("kernel_shape", c.kernel);
      node.attrs.set("strides", c.strides);
      node.attrs.set("dilations", c.dilations);
      node.attrs.set("pads", c.pads);
      node.attrs.set("ceil_mode", int64_t(c.ceil_mode));
      const Tensor want = run(node, {&x})[0];
      for (float v : as_f32(want)) ASSERT_FALSE(std::isnan(v));
      node.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
      EXPECT_EQ(as_f32(to_nchw(run(node, {&xl})[0])), as_f32(want)) << channels << " channels";
      try {  // the Indices output is not computed channels-last
        run(node, {&xl}, 2);
        ADD_FAILURE() << "expected an Error";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("Indices"), std::string::npos) << e.what();
      }
    }
  }
  Tensor x = int_valued(DType::f32, {2, 19, 9, 8}, 73);
  const Tensor xl = to_nhwc(x);
  // AveragePool: the same sums in the same order and the same divisors, so the same bits.
  for (const int64_t channels : {19, 83}) {
    const Tensor xa = int_valued(DType::f32, {2, channels, 9, 8}, 74), xal = to_nhwc(xa);
    for (const PoolCase& c : std::vector<PoolCase>{{{2, 2}, {2, 2}, {1, 1}, {0, 0, 0, 0}},
                                                   {{3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},
                                                   {{3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, true},
                                                   {{3, 2}, {2, 1}, {1, 1}, {1, 0, 2, 1}}})
      for (const int64_t include_pad : {0, 1}) {
        Node node = make_node("AveragePool", 19);
        node.attrs.set("kernel_shape", c.kernel);
        node.attrs.set("strides", c.strides);
        node.attrs.set("pads", c.pads);
        node.attrs.set("ceil_mode", int64_t(c.ceil_mode));
        node.attrs.set("count_include_pad", include_pad);
        const Tensor want = run(node, {&xa})[0];
        node.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
        EXPECT_EQ(as_f32(to_nchw(run(node, {&xal})[0])), as_f32(want))
            << channels << " channels, kernel " << shape_str(c.kernel) << " count_include_pad "
            << include_pad;
      }
  }
  Node gap = make_node("GlobalAveragePool");
  const Tensor want = run(gap, {&x})[0];
  gap.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
  const Tensor got = run(gap, {&xl})[0];
  EXPECT_EQ(got.shape(), want.shape());
  EXPECT_EQ(as_f32(got), as_f32(want));
}

// The max pool of act(conv) in the definition's order: pool windows of pool_h x pool_w with equal strides,
// rows and columns past the last whole window dropped. y [N][OC][OH][OW] -> [N][OC][OH/ph][OW/pw].
std::vector<float> activated_max_pool(const Tensor& y, Activation act, int64_t ph, int64_t pw) {
  const int64_t N = y.dim(0), OC = y.dim(1), OH = y.dim(2), OW = y.dim(3), PH = OH / ph, PW = OW / pw;
  std::vector<float> out;
  for (int64_t p = 0; p < N * OC; ++p)
    for (int64_t i = 0; i < PH; ++i)
      for (int64_t j = 0; j < PW; ++j) {
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t a = 0; a < ph; ++a)
          for (int64_t b = 0; b < pw; ++b)
            m = std::max(m,
                         reference::activate(y.data<float>()[(p * OH + i * ph + a) * OW + j * pw + b], act));
        out.push_back(m);
      }
  return out;
}

TEST(OpsChannelsLast, ConvMatchesTheDirectLoopWithEveryTactic) {
  const std::vector<ConvCase> cases = {
      {{2, 8, 7, 6}, {16, 8, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},    // 3x3 pad 1
      {{1, 12, 9, 8}, {20, 12, 3, 2}, {2, 1}, {1, 2}, {0, 1, 1, 0}},  // strides, dilations, asymmetric pads
      {{3, 16, 5, 5}, {24, 16, 1, 1}, {1, 1}, {1, 1}, {}},            // pointwise: no im2col
  };
  uint32_t seed = 300;
  for (const ConvCase& c : cases) {
    Tensor x = int_valued(DType::f32, c.x_shape, seed++), w = int_valued(DType::f32, c.w_shape, seed++);
    Tensor bias = int_valued(DType::f32, {c.w_shape[0]}, seed++);
    // 2:4 along the canonical K order (kernel position, input channel), so every tactic applies.
    Tensor wc = ops::conv_weight_canonical(w);
    for (int64_t i = 0; i < wc.numel(); ++i)
      if (i % 4 >= 2) wc.data<float>()[i] = 0.0f;
    // Back to the ONNX layout for the reference loop: canonical [OC][pos · IC + ic] -> [OC][IC][pos].
    const int64_t OC = c.w_shape[0], IC = c.w_shape[1], kvol = wc.dim(1) / IC;
    for (int64_t o = 0; o < OC; ++o)
      for (int64_t ic = 0; ic < IC; ++ic)
        for (int64_t pos = 0; pos < kvol; ++pos)
          w.data<float>()[(o * IC + ic) * kvol + pos] = wc.data<float>()[o * wc.dim(1) + pos * IC + ic];
    Node node = conv_node(c);
    ConvShape s = ops::conv_shape(node, c.x_shape, c.w_shape);
    const std::vector<float> want = as_f32(naive_conv(s, x, w, &bias));
    const Tensor xl = to_nhwc(x);
    for (Tactic t : {Tactic::dense_blas, Tactic::dense_onednn, Tactic::sparse24_cpu}) {
      auto state = conv_linear_node(c.w_shape, wc, bias, Activation::none, t);
      Node n = node;
      n.state = state;
      std::vector<Tensor> out(1);
      const Tensor* in[] = {&x};
      state->run(n, in, out);
      EXPECT_EQ(as_f32(out[0]), want) << tactic_name(t) << " channels-first " << shape_str(c.x_shape);
      n.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
      const Tensor* in_l[] = {&xl};
      state->run(n, in_l, out);
      EXPECT_EQ(as_f32(to_nchw(out[0])), want) << tactic_name(t) << " channels-last " << shape_str(c.x_shape);
      // A fused residual block: relu(conv + r), in both layouts.
      Tensor r = int_valued(DType::f32, s.output_shape(), seed);
      std::vector<float> want_res = want;
      for (size_t e = 0; e < want_res.size(); ++e)
        want_res[e] = std::max(0.0f, want_res[e] + r.data<float>()[e]);
      n.attrs.set("sparse24_residual_relu", int64_t(1));
      const Tensor rl = to_nhwc(r);
      const Tensor* in_lr[] = {&xl, &rl};
      state->run(n, in_lr, out);
      EXPECT_EQ(as_f32(to_nchw(out[0])), want_res) << tactic_name(t) << " channels-last + residual";
      n.attrs.set(ops::kLayoutAttr, std::string(""));
      const Tensor* in_r[] = {&x, &r};
      state->run(n, in_r, out);
      EXPECT_EQ(as_f32(out[0]), want_res) << tactic_name(t) << " channels-first + residual";
      // A fused max pool (fuse_conv_pool), rows and columns past the last whole window left out: on 2:4 the
      // kernel call's second phase, on the others a pass after the convolution.
      for (auto [ph, pw] : std::vector<std::pair<int64_t, int64_t>>{{2, 2}, {1, 3}}) {
        Node pooled_node = node;
        pooled_node.state = state;
        pooled_node.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
        pooled_node.attrs.set(kPoolAttr, std::vector<int64_t>{ph, pw});
        state->run(pooled_node, in_l, out);
        EXPECT_EQ(as_f32(to_nchw(out[0])),
                  activated_max_pool(naive_conv(s, x, w, &bias), Activation::none, ph, pw))
            << tactic_name(t) << " pooled " << ph << "x" << pw << " " << shape_str(c.x_shape);
      }
      // A fused ReLU6 (a Clip(0, 6) that fuse_epilogues took in), in both layouts: the sums here reach
      // past both bounds.
      auto relu6 = conv_linear_node(c.w_shape, wc, bias, Activation::relu6, t);
      std::vector<float> want6 = want;
      for (float& v : want6) v = std::min(std::max(v, 0.0f), 6.0f);
      Node n6 = node;
      n6.state = relu6;
      relu6->run(n6, in, out);
      EXPECT_EQ(as_f32(out[0]), want6) << tactic_name(t) << " channels-first ReLU6";
      n6.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
      relu6->run(n6, in_l, out);
      EXPECT_EQ(as_f32(to_nchw(out[0])), want6) << tactic_name(t) << " channels-last ReLU6";
    }
  }
}

// A convolution node keeps what it works out from its attributes and input shape per (attributes, shape):
// inputs whose batch and image size change from run to run, more shapes than it keeps, and attributes
// changed between runs must each still compute their own convolution.
// A depthwise Conv (group = IC = OC) that to_channels_last made channels-last (a DepthwiseConvNode): the
// same bits as the channels-first op and the direct loop, for channel counts on and off the kernels'
// 16-channel vectors, windows inside the row (four pixels at a time, then singles) and leaving it, strides,
// dilations, asymmetric padding, with and without a bias, and with a fused ReLU or Clip set between runs.
TEST(OpsChannelsLast, DepthwiseConvMatchesTheChannelsFirstOp) {
  uint32_t seed = 500;
  for (const int64_t C : {5, 19, 96})
    for (const ConvCase& c :
         std::vector<ConvCase>{{{2, C, 9, 8}, {C, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, C},
                               {{1, C, 11, 10}, {C, 1, 3, 3}, {2, 2}, {1, 1}, {0, 1, 1, 0}, C},
                               {{1, C, 10, 9}, {C, 1, 5, 3}, {1, 2}, {2, 1}, {2, 1, 2, 1}, C}}) {
      Node node = conv_node(c);
      const Tensor x = int_valued(DType::f32, c.x_shape, seed++),
                   w = int_valued(DType::f32, c.w_shape, seed++);
      const Tensor bias = int_valued(DType::f32, {C}, seed++), xl = to_nhwc(x);
      const ConvShape s = ops::conv_shape(node, c.x_shape, c.w_shape);
      const std::vector<float> want = as_f32(naive_conv(s, x, w, &bias));
      EXPECT_EQ(as_f32(run(node, {&x, &w, &bias})[0]), want);
      node.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
      const auto run_last = [&](const NodeState& state) {
        std::vector<Tensor> out(1);
        const Tensor* in[] = {&xl};
        state.run(node, in, out);
        return as_f32(to_nchw(out[0]));
      };
      const auto with_bias = DepthwiseConvNode::from_onnx(w, {bias.data<float>(), bias.data<float>() + C});
      EXPECT_EQ(run_last(*with_bias), want) << shape_str(c.x_shape) << " kernel " << shape_str(c.w_shape);
      EXPECT_EQ(run_last(*DepthwiseConvNode::from_onnx(w, {})), as_f32(naive_conv(s, x, w, nullptr)));
      // With the ReLU or the Clip fuse_depthwise_activation takes in: the Relu or Clip op's values.
      node.attrs.set(ops::kDepthwiseReluAttr, int64_t(1));
      std::vector<float> want_relu = want;
      for (float& v : want_relu) v = v > 0.0f ? v : 0.0f;
      EXPECT_EQ(run_last(*with_bias), want_relu) << shape_str(c.x_shape);
      node.attrs.erase(ops::kDepthwiseReluAttr);
      node.attrs.set(ops::kDepthwiseClipAttr, std::vector<float>{-3.0f, 6.0f});
      std::vector<float> want_clip = want;
      for (float& v : want_clip) v = std::min(std::max(v, -3.0f), 6.0f);
      EXPECT_EQ(run_last(*with_bias), want_clip) << shape_str(c.x_shape);
      // The stateless op refuses a channels-last Conv: only the optimizer's nodes run one.
      EXPECT_THROW(run(node, {&xl, &w, &bias}), Error);
    }
}

TEST(OpsChannelsLast, ConvNodeFollowsEveryInputShapeAndAttributeChange) {
  const ConvCase geometry = {{1, 8, 7, 6}, {16, 8, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}};
  Tensor w = int_valued(DType::f32, geometry.w_shape, 410), bias = int_valued(DType::f32, {16}, 411);
  Tensor wc = ops::conv_weight_canonical(w);
  for (int64_t i = 0; i < wc.numel(); ++i)
    if (i % 4 >= 2) wc.data<float>()[i] = 0.0f;
  for (int64_t o = 0; o < 16; ++o)  // the pruned weight back in the ONNX layout, for the reference
    for (int64_t ic = 0; ic < 8; ++ic)
      for (int64_t pos = 0; pos < 9; ++pos)
        w.data<float>()[(o * 8 + ic) * 9 + pos] = wc.data<float>()[o * 72 + pos * 8 + ic];
  auto state = conv_linear_node(geometry.w_shape, wc, bias, Activation::none, Tactic::sparse24_cpu);
  Node n = conv_node(geometry);
  n.state = state;
  n.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
  // 20 shapes (more than the node keeps), each run twice, the second time after the others.
  std::vector<std::vector<int64_t>> shapes;
  for (int64_t b = 1; b <= 4; ++b)
    for (int64_t hw = 6; hw <= 10; ++hw) shapes.push_back({b, 8, hw, hw + 1});
  uint32_t seed = 420;
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& shape : shapes) {
      const Tensor x = int_valued(DType::f32, shape, seed++), xl = to_nhwc(x);
      const ConvShape s = ops::conv_shape(n, shape, geometry.w_shape);
      std::vector<Tensor> out(1);
      const Tensor* in[] = {&xl};
      state->run(n, in, out);
      EXPECT_EQ(as_f32(to_nchw(out[0])), as_f32(naive_conv(s, x, w, &bias))) << shape_str(shape);
    }
  // A changed attribute on the same node and input shape: padding 0 shrinks the output.
  const Tensor x = int_valued(DType::f32, {2, 8, 7, 6}, seed++), xl = to_nhwc(x);
  const Tensor* in[] = {&xl};
  std::vector<Tensor> out(1);
  state->run(n, in, out);
  n.attrs.set("pads", std::vector<int64_t>{0, 0, 0, 0});
  state->run(n, in, out);
  const ConvShape s = ops::conv_shape(n, x.shape(), geometry.w_shape);
  EXPECT_EQ(out[0].shape(), (std::vector<int64_t>{2, 5, 4, 16}));
  EXPECT_EQ(as_f32(to_nchw(out[0])), as_f32(naive_conv(s, x, w, &bias)));
}

TEST(OpsChannelsLast, ShortKConvAndFusedPoolMatchTheDirectLoopOnEveryIsa) {
  const std::vector<ConvCase> cases = {
      {{2, 1, 9, 10}, {16, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},  // a gray stem
      {{1, 3, 11, 7}, {70, 3, 3, 3}, {2, 1}, {1, 1}, {0, 1, 1, 0}},  // RGB, K = 27, 70 channels, asymmetric
      {{3, 2, 8, 8}, {5, 2, 2, 2}, {1, 1}, {2, 2}, {2, 2, 2, 2}},    // dilated, 5 channels
      {{1, 1, 12, 12}, {8, 1, 5, 5}, {1, 2}, {1, 1}, {2, 2, 2, 2}},  // K = 25
      // 24 and 40 channels: two and three 16-channel registers per pixel on AVX-512
      {{2, 1, 9, 9}, {24, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},
      {{1, 3, 7, 8}, {40, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},
  };
  std::vector<cpu::Isa> isas = {cpu::Isa::ref};
  for (cpu::Isa isa : {cpu::Isa::avx2, cpu::Isa::avx512})
    if (cpu::cpu_supports(isa)) isas.push_back(isa);
  uint32_t seed = 900;
  for (const ConvCase& c : cases) {
    const Tensor x = int_valued(DType::f32, c.x_shape, seed++), w = int_valued(DType::f32, c.w_shape, seed++);
    const Tensor bias = int_valued(DType::f32, {c.w_shape[0]}, seed++);
    const Node node = conv_node(c);
    const ConvShape s = ops::conv_shape(node, c.x_shape, c.w_shape);
    ASSERT_TRUE(ops::direct_conv_applies(s)) << shape_str(c.w_shape);
    const Tensor conv = naive_conv(s, x, w, &bias);
    const Tensor xl = to_nhwc(x);
    const Tensor wc = ops::conv_weight_canonical(w);
    const std::vector<float> b(bias.data<float>(), bias.data<float>() + bias.numel());
    for (Activation act : {Activation::none, Activation::relu, Activation::relu6})
      for (auto [ph, pw] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {2, 2}, {3, 2}}) {
        const std::vector<float> want = activated_max_pool(conv, act, ph, pw);
        const std::vector<int64_t> pooled = {s.batch, s.out_channels, s.window.out[0] / ph,
                                             s.window.out[1] / pw};
        const ops::DirectConvWeights dw = ops::direct_conv_weights(wc, b, act);
        for (cpu::Isa isa : isas) {
          Tensor y(DType::f32, ops::channels_last_shape(pooled));
          ops::conv_direct_nhwc(dw, s, ph, pw, xl.data<float>(), y.data<float>(), isa);
          EXPECT_EQ(as_f32(to_nchw(y)), want) << cpu::isa_name(isa) << " " << shape_str(c.w_shape)
                                              << " activation " << int(act) << " pool " << ph << "x" << pw;
        }
        // The fused node (fuse_conv_pool's sparse24_pool attribute) with its direct tactic and with the
        // others, which pool after the convolution.
        if (ph == 1) continue;
        for (Tactic t : {Tactic::dense_direct, Tactic::dense_blas, Tactic::dense_onednn}) {
          auto state = conv_linear_node(c.w_shape, wc, bias, act, t);
          Node n = node;
          n.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
          n.attrs.set(kPoolAttr, std::vector<int64_t>{ph, pw});
          n.state = state;
          ASSERT_TRUE(state->supports_direct(n));
          std::vector<Tensor> out(1);
          const Tensor* in[] = {&xl};
          state->run(n, in, out);
          EXPECT_EQ(as_f32(to_nchw(out[0])), want) << tactic_name(t) << " " << shape_str(c.w_shape);
        }
      }
  }
}

// A NaN stays NaN through a ReLU or ReLU6, as in onnxruntime's Relu and Clip: the op, fused into the
// direct and BLAS convolution tactics, and the depthwise node's (a NaN bias on channel 1; the other
// channels as the direct loop).
TEST(OpsActivation, ReluKeepsNaNWhereverItRuns) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor v(DType::f32, {3});
  v.data<float>()[0] = nan, v.data<float>()[1] = -1.0f, v.data<float>()[2] = 2.0f;
  const std::vector<float> relu = as_f32(run(make_node("Relu"), {&v})[0]);
  EXPECT_TRUE(std::isnan(relu[0]));
  EXPECT_EQ(relu[1], 0.0f);
  EXPECT_EQ(relu[2], 2.0f);

  const ConvCase c = {{1, 4, 6, 5}, {8, 4, 1, 1}, {1, 1}, {1, 1}, {}};  // K = 4: the direct kernels apply
  const Tensor x = int_valued(DType::f32, c.x_shape, 900), w = int_valued(DType::f32, c.w_shape, 901);
  Tensor bias = int_valued(DType::f32, {8}, 902);
  const Tensor xl = to_nhwc(x), wc = ops::conv_weight_canonical(w);
  const Node node = conv_node(c);
  const ConvShape s = ops::conv_shape(node, c.x_shape, c.w_shape);
  const Tensor conv = naive_conv(s, x, w, &bias);
  bias.data<float>()[1] = nan;
  // Channel 1 (its bias NaN) all NaN, every other channel want's values after the activation.
  const auto check = [](const Tensor& nchw, const Tensor& want, Activation act, const std::string& what) {
    const std::vector<float> got = as_f32(nchw);
    const int64_t pixels = want.numel() / want.dim(1);
    for (int64_t ch = 0; ch < want.dim(1); ++ch)
      for (int64_t i = 0; i < pixels; ++i) {
        const float g = got[size_t(ch * pixels + i)];
        if (ch == 1)
          ASSERT_TRUE(std::isnan(g)) << what << " activation " << int(act);
        else
          ASSERT_EQ(g, reference::activate(want.data<float>()[ch * pixels + i], act))
              << what << " channel " << ch;
      }
  };
  for (Activation act : {Activation::relu, Activation::relu6}) {
    // The 2:4 tactic's kernels have their own test (Spmm24KernelTest.fused_relu_keeps_nan). oneDNN's
    // convolution applies its ReLU and clip post-ops as max/min against 0 and 6, which turn a NaN into 0
    // (docs/engine.md): its tactic is left out here.
    for (Tactic t : {Tactic::dense_direct, Tactic::dense_blas}) {
      auto state = conv_linear_node(c.w_shape, wc, bias, act, t);
      Node n = node;
      n.state = state;
      n.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
      std::vector<Tensor> out(1);
      const Tensor* in[] = {&xl};
      state->run(n, in, out);
      check(to_nchw(out[0]), conv, act, std::string(tactic_name(t)));
    }
  }
  // The depthwise node's fused ReLU.
  const ConvCase d = {{1, 4, 6, 5}, {4, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 4};
  Node dn = conv_node(d);
  const Tensor dw = int_valued(DType::f32, d.w_shape, 903);
  Tensor dbias = int_valued(DType::f32, {4}, 904);
  const Tensor dconv = naive_conv(ops::conv_shape(dn, d.x_shape, d.w_shape), x, dw, &dbias);
  dbias.data<float>()[1] = nan;
  dn.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
  dn.attrs.set(ops::kDepthwiseReluAttr, int64_t(1));
  const auto depthwise = DepthwiseConvNode::from_onnx(dw, {dbias.data<float>(), dbias.data<float>() + 4});
  std::vector<Tensor> out(1);
  const Tensor* in[] = {&xl};
  depthwise->run(dn, in, out);
  check(to_nchw(out[0]), dconv, Activation::relu, "depthwise");
}

TEST(OpsMatMul, BatchBroadcasting) {
  Tensor a = int_valued(DType::f32, {2, 1, 3, 4}, 21), b = int_valued(DType::f32, {3, 4, 5}, 22);
  Tensor y = run(make_node("MatMul"), {&a, &b})[0];
  ASSERT_EQ(y.shape(), (std::vector<int64_t>{2, 3, 3, 5}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      Tensor want = naive_matmul_2d(a.data<float>() + i * 12, b.data<float>() + j * 20, 3, 4, 5);
      for (int64_t e = 0; e < 15; ++e)
        ASSERT_EQ(y.data<float>()[(i * 3 + j) * 15 + e], want.data<float>()[e]);
    }
}

TEST(OpsMatMul, SharedWeightStacksBatchesAndOneDimOperands) {
  Tensor a = int_valued(DType::f32, {2, 3, 4}, 31), b = int_valued(DType::f32, {4, 6}, 32);
  Tensor y = run(make_node("MatMul"), {&a, &b})[0];
  EXPECT_EQ(as_f32(y), as_f32(naive_matmul_2d(a.data<float>(), b.data<float>(), 6, 4, 6)));

  Tensor row = int_valued(DType::f32, {1, 4}, 33);  // M = 1: the sgemv path
  EXPECT_EQ(as_f32(run(make_node("MatMul"), {&row, &b})[0]),
            as_f32(naive_matmul_2d(row.data<float>(), b.data<float>(), 1, 4, 6)));

  Tensor vec = int_valued(DType::f32, {4}, 34);  // 1-D A: [4] x [2, 4, 6] -> [2, 6]
  Tensor b3 = int_valued(DType::f32, {2, 4, 6}, 35);
  Tensor y1 = run(make_node("MatMul"), {&vec, &b3})[0];
  ASSERT_EQ(y1.shape(), (std::vector<int64_t>{2, 6}));
  for (int64_t i = 0; i < 2; ++i) {
    Tensor want = naive_matmul_2d(vec.data<float>(), b3.data<float>() + i * 24, 1, 4, 6);
    for (int64_t e = 0; e < 6; ++e) ASSERT_EQ(y1.data<float>()[i * 6 + e], want.data<float>()[e]);
  }

  Tensor col = int_valued(DType::f32, {4}, 36);  // 1-D B: [2, 3, 4] x [4] -> [2, 3] (N = 1)
  Tensor y2 = run(make_node("MatMul"), {&a, &col})[0];
  ASSERT_EQ(y2.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(as_f32(y2), as_f32(naive_matmul_2d(a.data<float>(), col.data<float>(), 6, 4, 1)));

  Tensor dot = run(make_node("MatMul"), {&vec, &col})[0];  // [4] x [4] -> scalar
  EXPECT_EQ(dot.shape(), std::vector<int64_t>{});
  EXPECT_EQ(dot.get(0), naive_matmul_2d(vec.data<float>(), col.data<float>(), 1, 4, 1).get(0));
}

TEST(OpsMatMul, MismatchedKNamesTheNode) {
  Tensor a(DType::f32, {2, 3}), b(DType::f32, {4, 5});
  expect_error_names_node(make_node("MatMul"), {&a, &b}, "disagree on K");
  Tensor c(DType::f32, {2, 3, 4}), d(DType::f32, {3, 4, 5});
  expect_error_names_node(make_node("MatMul"), {&c, &d}, "do not broadcast");
}

TEST(OpsGemm, TransposesAlphaBetaAndBiasBroadcast) {
  for (int64_t M : {1, 5})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t K = 7, N = 3;
        Tensor a = int_valued(DType::f32, ta ? std::vector<int64_t>{K, M} : std::vector<int64_t>{M, K}, 41);
        Tensor b = int_valued(DType::f32, tb ? std::vector<int64_t>{N, K} : std::vector<int64_t>{K, N}, 42);
        Tensor c = int_valued(DType::f32, {N}, 43);
        Node node = make_node("Gemm");
        node.attrs.set("transA", int64_t(ta));
        node.attrs.set("transB", int64_t(tb));
        node.attrs.set("alpha", 2.0f);
        node.attrs.set("beta", 0.5f);
        Tensor y = run(node, {&a, &b, &c})[0];
        ASSERT_EQ(y.shape(), (std::vector<int64_t>{M, N}));
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            float acc = 0;
            for (int64_t k = 0; k < K; ++k)
              acc += a.get(ta ? k * M + m : m * K + k) * b.get(tb ? n * K + k : k * N + n);
            ASSERT_EQ(y.get(m * N + n), 2.0f * acc + 0.5f * c.get(n))
                << "M " << M << " ta " << ta << " tb " << tb;
          }
      }
}

// ---- opset-dependent semantics and the rest ----

TEST(OpsSoftmax, AxisSemanticsChangeAtOpset13) {
  Tensor x = int_valued(DType::f32, {2, 3, 4}, 51);
  Node old_node = make_node("Softmax", 11), new_node = make_node("Softmax", 13);
  old_node.attrs.set("axis", int64_t(1));
  new_node.attrs.set("axis", int64_t(1));
  Tensor y_old = run(old_node, {&x})[0], y_new = run(new_node, {&x})[0];
  for (int64_t n = 0; n < 2; ++n) {
    double flat = 0;  // opset 11: one softmax over the 12 trailing values
    for (int64_t i = 0; i < 12; ++i) flat += std::exp(double(x.get(n * 12 + i)));
    for (int64_t i = 0; i < 12; ++i)
      EXPECT_NEAR(y_old.get(n * 12 + i), std::exp(double(x.get(n * 12 + i))) / flat, 1e-6);
    for (int64_t w = 0; w < 4; ++w) {  // opset 13: along axis 1 only
      double col = 0;
      for (int64_t c = 0; c < 3; ++c) col += std::exp(double(x.get(n * 12 + c * 4 + w)));
      for (int64_t c = 0; c < 3; ++c)
        EXPECT_NEAR(y_new.get(n * 12 + c * 4 + w), std::exp(double(x.get(n * 12 + c * 4 + w))) / col, 1e-6);
    }
  }
}

TEST(OpsReduceMean, AxesInputFromOpset18AndInnerAxes) {
  Tensor x = int_valued(DType::f32, {2, 3, 4}, 61);
  Tensor axes = i64_tensor({-3, 2});
  Node node = make_node("ReduceMean", 18);
  node.attrs.set("keepdims", int64_t(0));
  Tensor y = run(node, {&x, &axes})[0];
  ASSERT_EQ(y.shape(), std::vector<int64_t>{3});
  for (int64_t c = 0; c < 3; ++c) {
    double sum = 0;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t w = 0; w < 4; ++w) sum += x.get(n * 12 + c * 4 + w);
    EXPECT_FLOAT_EQ(y.get(c), float(sum / 8));
  }
  Node noop = make_node("ReduceMean", 18);
  noop.attrs.set("noop_with_empty_axes", int64_t(1));
  EXPECT_EQ(as_f32(run(noop, {&x})[0]), as_f32(x));
  Node old_node = make_node("ReduceMean", 13);  // axes as an attribute before 18
  old_node.attrs.set("axes", std::vector<int64_t>{1});
  Tensor y13 = run(old_node, {&x})[0];
  ASSERT_EQ(y13.shape(), (std::vector<int64_t>{2, 1, 4}));
  EXPECT_FLOAT_EQ(y13.get(0), (x.get(0) + x.get(4) + x.get(8)) / 3);
}

TEST(OpsShape, SliceNegativeStepsAndGatherNegativeIndices) {
  Tensor x(DType::i64, {3, 5});
  for (int64_t i = 0; i < 15; ++i) x.data<int64_t>()[i] = i;
  Tensor starts = i64_tensor({-1, 100}), ends = i64_tensor({-100, 0}), axes = i64_tensor({1, 0}),
         steps = i64_tensor({-2, -1});
  Tensor y = run(make_node("Slice", 13), {&x, &starts, &ends, &axes, &steps})[0];
  ASSERT_EQ(y.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(as_i64(y), (std::vector<int64_t>{14, 12, 10, 9, 7, 5}));

  Tensor idx = i64_tensor({-1, 0, -5, 2}, {2, 2});
  Node gather = make_node("Gather");
  gather.attrs.set("axis", int64_t(1));
  Tensor g = run(gather, {&x, &idx})[0];
  ASSERT_EQ(g.shape(), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(as_i64(g), (std::vector<int64_t>{4, 0, 0, 2, 9, 5, 5, 7, 14, 10, 10, 12}));
  Tensor bad = i64_tensor({5});
  expect_error_names_node(gather, {&x, &bad}, "out of range");
}

TEST(OpsShape, UnsqueezeAxesAttributeBeforeOpset13InputAfter) {
  Tensor x(DType::f32, {3, 4});
  Node old_node = make_node("Unsqueeze", 11);
  old_node.attrs.set("axes", std::vector<int64_t>{0, -1});
  EXPECT_EQ(run(old_node, {&x})[0].shape(), (std::vector<int64_t>{1, 3, 4, 1}));
  Tensor axes = i64_tensor({1});
  EXPECT_EQ(run(make_node("Unsqueeze", 13), {&x, &axes})[0].shape(), (std::vector<int64_t>{3, 1, 4}));
  Tensor y(DType::f32, {1, 3, 1});
  EXPECT_EQ(run(make_node("Squeeze", 13), {&y})[0].shape(), std::vector<int64_t>{3});
  Tensor sq_axes = i64_tensor({1});
  expect_error_names_node(make_node("Squeeze", 13), {&y, &sq_axes}, "not 1");
}

TEST(OpsShape, ReshapeZeroMinusOneAndAllowzero) {
  Tensor x(DType::f32, {2, 3, 4});
  Tensor shape = i64_tensor({0, -1});
  EXPECT_EQ(run(make_node("Reshape"), {&x, &shape})[0].shape(), (std::vector<int64_t>{2, 12}));
  Tensor bad = i64_tensor({5, -1});
  expect_error_names_node(make_node("Reshape"), {&x, &bad}, "cannot infer");
  Tensor empty(DType::f32, {0, 3});
  Tensor zero_shape = i64_tensor({3, 0});
  Node allowzero = make_node("Reshape");
  allowzero.attrs.set("allowzero", int64_t(1));
  EXPECT_EQ(run(allowzero, {&empty, &zero_shape})[0].shape(), (std::vector<int64_t>{3, 0}));
}

TEST(OpsCast, FloatToIntegerTruncatesAndSaturates) {
  Tensor x(DType::f32, {5});
  const float values[] = {2.7f, -2.7f, 3e10f, -3e10f, std::nanf("")};
  for (int i = 0; i < 5; ++i) x.data<float>()[i] = values[i];
  Node node = make_node("Cast");
  node.attrs.set("to", int64_t(onnx::TensorProto::INT32));
  Tensor y = run(node, {&x})[0];
  ASSERT_EQ(y.dtype(), DType::i32);
  const int32_t want[] = {2, -2, INT32_MAX, INT32_MIN, 0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(y.data<int32_t>()[i], want[i]) << i;
  node.attrs.set("to", int64_t(onnx::TensorProto::FLOAT16));
  Tensor h = run(node, {&x})[0];
  EXPECT_EQ(h.data<uint16_t>()[0], f32_to_f16(2.7f));
  node.attrs.set("to", int64_t(onnx::TensorProto::DOUBLE));
  expect_error_names_node(node, {&x}, "not supported");
}

TEST(OpsGelu, ExactAndTanhForms) {
  Tensor x(DType::f32, {3});
  x.data<float>()[0] = -1.5f;
  x.data<float>()[1] = 0.25f;
  x.data<float>()[2] = 2.0f;
  Node exact = make_node("Gelu", 20), approx = make_node("Gelu", 20);
  approx.attrs.set("approximate", std::string("tanh"));
  Tensor ye = run(exact, {&x})[0], ya = run(approx, {&x})[0];
  for (int i = 0; i < 3; ++i) {
    const double v = x.get(i);
    EXPECT_NEAR(ye.get(i), 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))), 1e-6);
    EXPECT_NEAR(ya.get(i),
                0.5 * v * (1 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (v + 0.044715 * v * v * v))),
                1e-6);
  }
  Node bad = make_node("Gelu", 20);
  bad.attrs.set("approximate", std::string("fast"));
  expect_error_names_node(bad, {&x}, "approximate");
}

// Transpose against its definition, for every permutation of a 4-D tensor (the rotations of trailing axes,
// NHWC <-> NCHW among them, take a blocked path; dims above its 16-element tiles, and an image of three
// channels large enough for the tiles to split over threads), for 1-, 4- and 8-byte elements, with perm
// given as negative axes too.
TEST(OpsShape, TransposeEveryPermutation) {
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{2, 3, 17, 20}, std::vector<int64_t>{1, 3, 100, 121}})
    for (DType dt : {DType::f32, DType::i64, DType::i8}) {
      Tensor x(dt, shape);
      for (int64_t i = 0; i < x.numel(); ++i) {
        if (dt == DType::f32) x.data<float>()[i] = float(i) - 0.5f;
        if (dt == DType::i64) x.data<int64_t>()[i] = (int64_t(1) << 40) + i;
        if (dt == DType::i8) x.data<int8_t>()[i] = int8_t(i % 251 - 125);
      }
      std::vector<int64_t> perm = {0, 1, 2, 3};
      do {
        Node n = make_node("Transpose");
        std::vector<int64_t> given = perm;
        if (perm[0] == 0) given[3] -= 4;  // as a negative axis
        n.attrs.set("perm", given);
        const Tensor y = run(n, {&x})[0];
        std::vector<int64_t> want_shape(4), stride_in(4);
        for (int i = 3, st = 1; i >= 0; st *= int(shape[size_t(i)]), --i) stride_in[size_t(i)] = st;
        for (size_t i = 0; i < 4; ++i) want_shape[i] = shape[size_t(perm[i])];
        ASSERT_EQ(y.shape(), want_shape);
        int64_t o = 0;
        for (int64_t a = 0; a < want_shape[0]; ++a)
          for (int64_t b = 0; b < want_shape[1]; ++b)
            for (int64_t c = 0; c < want_shape[2]; ++c)
              for (int64_t d = 0; d < want_shape[3]; ++d, ++o) {
                const int64_t idx[4] = {a, b, c, d};
                int64_t src = 0;
                for (size_t i = 0; i < 4; ++i) src += idx[i] * stride_in[size_t(perm[i])];
                ASSERT_EQ(std::memcmp(y.bytes() + o * dtype_size(dt), x.bytes() + src * dtype_size(dt),
                                      dtype_size(dt)),
                          0)
                    << dtype_name(dt) << " perm " << shape_str(perm) << " at " << o;
              }
      } while (std::next_permutation(perm.begin(), perm.end()));
    }
}

// Empty tensors flow through every op with the right output shape (and nothing is read out of bounds: this
// runs under AddressSanitizer).
// Clip's bounds from inputs (opset 11+) or attributes (before), and one clear error for a bound of the
// wrong dtype or size and for an input dtype it does not take.
TEST(OpsClip, BoundsFromInputsOrAttributesAndBadBoundsNamed) {
  Tensor x(DType::f32, {5});
  const float values[] = {-9.0f, -1.0f, 0.5f, 7.0f, std::numeric_limits<float>::quiet_NaN()};
  std::copy(std::begin(values), std::end(values), x.data<float>());
  Tensor lo(DType::f32, {}), hi(DType::f32, {});
  lo.data<float>()[0] = -2.0f, hi.data<float>()[0] = 6.0f;
  const std::vector<float> y = as_f32(run(make_node("Clip", 13), {&x, &lo, &hi})[0]);
  EXPECT_EQ(std::vector<float>(y.begin(), y.begin() + 4), (std::vector<float>{-2.0f, -1.0f, 0.5f, 6.0f}));
  EXPECT_TRUE(std::isnan(y[4]));  // a NaN stays NaN
  Node old = make_node("Clip", 6);
  old.attrs.set("max", 0.0f);
  EXPECT_EQ(as_f32(run(old, {&x})[0])[0], -9.0f);  // only max given: min stays open
  EXPECT_EQ(as_f32(run(old, {&x})[0])[3], 0.0f);
  Tensor wrong(DType::i64, {});
  try {
    run(make_node("Clip", 13), {&x, &wrong});
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("node_Clip"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("min"), std::string::npos) << e.what();
  }
  Tensor two(DType::f32, {2});
  EXPECT_THROW(run(make_node("Clip", 13), {&x, nullptr, &two}), Error);
  Tensor half(DType::bf16, {3});
  EXPECT_THROW(run(make_node("Clip", 13), {&half}), Error);
}

TEST(OpsEdge, ZeroSizedTensors) {
  Tensor e(DType::f32, {0, 4}), row(DType::f32, {4}), w(DType::f32, {4, 5});
  EXPECT_EQ(run(make_node("Add"), {&e, &row})[0].shape(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(run(make_node("Softmax", 13), {&e})[0].shape(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(run(make_node("Erf"), {&e})[0].shape(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(run(make_node("LayerNormalization"), {&e, &row})[0].shape(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(run(make_node("MatMul"), {&e, &w})[0].shape(), (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(run(make_node("Transpose"), {&e})[0].shape(), (std::vector<int64_t>{4, 0}));
  Node concat = make_node("Concat");
  concat.attrs.set("axis", int64_t(0));
  Tensor two(DType::f32, {2, 4});
  EXPECT_EQ(run(concat, {&e, &two, &e})[0].shape(), (std::vector<int64_t>{2, 4}));
  Tensor no_index(DType::i64, {0});
  EXPECT_EQ(run(make_node("Gather"), {&two, &no_index})[0].shape(), (std::vector<int64_t>{0, 4}));
  Node reduce = make_node("ReduceMean", 13);
  reduce.attrs.set("axes", std::vector<int64_t>{1});
  EXPECT_EQ(run(reduce, {&e})[0].shape(), (std::vector<int64_t>{0, 1}));
  Tensor k_empty(DType::f32, {3, 0}), w_empty(DType::f32, {0, 2});
  Tensor zeros = run(make_node("MatMul"), {&k_empty, &w_empty})[0];  // K = 0: all zeros
  EXPECT_EQ(as_f32(zeros), std::vector<float>(6, 0.0f));
  ConvCase c{{0, 2, 5, 5}, {3, 2, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}};
  Tensor x(DType::f32, c.x_shape), cw = int_valued(DType::f32, c.w_shape, 81);
  EXPECT_EQ(run(conv_node(c), {&x, &cw})[0].shape(), (std::vector<int64_t>{0, 3, 5, 5}));
  Node pool = make_node("MaxPool");
  pool.attrs.set("kernel_shape", std::vector<int64_t>{2, 2});
  EXPECT_EQ(run(pool, {&x})[0].shape(), (std::vector<int64_t>{0, 2, 4, 4}));
  Tensor starts = i64_tensor({3}), ends = i64_tensor({1});
  EXPECT_EQ(run(make_node("Slice", 13), {&two, &starts, &ends})[0].shape(), (std::vector<int64_t>{0, 4}));
}

TEST(OpsErrors, WrongDtypeNamesTheNode) {
  Tensor i(DType::i32, {2});
  expect_error_names_node(make_node("Sqrt"), {&i}, "expected one of f32");
  Tensor f(DType::f32, {2}), l(DType::i64, {2});
  expect_error_names_node(make_node("Add"), {&f, &l}, "different dtypes");
}

// The planner may pin any f32 2:4 kernel at or below the active ISA to a layer's M (set_sparse_kernel); each
// gives the dispatcher's result exactly on integer-valued data, only at that M, and a kernel for other
// weights is refused.
TEST(LinearLayerKernels, EveryPinnedKernelMatchesTheDispatcher) {
  const Tensor w = test::random_24_tensor(DType::f32, 40, 96, 3);
  std::vector<float> bias(40);
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = float(int(i % 7) - 3);
  LinearLayer l(w, bias, Activation::relu);
  ASSERT_TRUE(l.is_24());
  l.set_tactic(Tactic::sparse24_cpu);
  for (int64_t M : {1, 5, 40}) {
    const Tensor x = test::random_int_tensor(DType::f32, M, 96, uint32_t(M));
    std::vector<float> want(size_t(M * 40)), got(size_t(M * 40));
    l.set_sparse_kernel(nullptr, 0);
    l.run(M, x.data<float>(), 96, want.data(), 40);
    int pinned = 0;
    for (const cpu::Spmm24Kernel& k : cpu::spmm24_kernels()) {
      if (k.weight_dtype != DType::f32 || uint8_t(k.isa) > uint8_t(cpu::active_isa())) continue;
      l.set_sparse_kernel(&k, M);
      EXPECT_EQ(l.sparse_kernel(), &k);
      std::fill(got.begin(), got.end(), -1.0f);
      l.run(M, x.data<float>(), 96, got.data(), 40);
      EXPECT_EQ(got, want) << k.name << " M=" << M;
      ++pinned;
    }
    EXPECT_GE(pinned, 1);
  }
  for (const cpu::Spmm24Kernel& k : cpu::spmm24_kernels()) {
    if (k.weight_dtype == DType::f32) continue;
    EXPECT_THROW(l.set_sparse_kernel(&k, 1), Error) << k.name;
  }
  // The dispatcher's own choice is one of the pinned ones (f32, the active ISA), and there is none off 2:4.
  EXPECT_EQ(l.dispatched_kernel(1)->weight_dtype, DType::f32);
  EXPECT_EQ(l.dispatched_kernel(1)->isa, cpu::active_isa());
  l.set_tactic(Tactic::dense_blas);
  EXPECT_EQ(l.dispatched_kernel(1), nullptr);
}

}  // namespace
}  // namespace sparse24::engine
