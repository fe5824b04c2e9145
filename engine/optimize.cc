#include "engine/optimize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "engine/ops/conv_direct.h"
#include "engine/ops/conv_gemm.h"
#include "engine/ops/op.h"
#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "util/error.h"

namespace sparse24::engine {

void LinearNode::run(const Node& node, std::span<const Tensor* const> inputs,
                     std::span<Tensor> outputs) const {
  const Tensor& x = *inputs[0];
  if (x.dtype() != DType::f32 || x.rank() < 1 || x.dim(-1) != layer->K())
    fail("node '{}' ({}): input is {} {}, expected f32 [.., {}]", node.name, source_op, dtype_name(x.dtype()),
         shape_str(x.shape()), layer->K());
  std::vector<int64_t> shape = x.shape();
  shape.back() = layer->N();
  outputs[0] = Tensor::uninitialized(DType::f32, shape);
  const int64_t M = x.numel() / layer->K();
  if (M > 0) layer->run(M, x.data<float>(), layer->K(), outputs[0].data<float>(), layer->N());
}

namespace {

// A fused residual (fuse_residual), checked against the convolution's output shape: y = post(conv(x) + r),
// post = ReLU when the node's sparse24_residual_relu says so. Null when the node has none.
const Tensor* fused_residual(const Node& node, std::span<const Tensor* const> inputs,
                             const std::vector<int64_t>& out_shape) {
  const Tensor* residual = inputs.size() > 1 ? inputs[1] : nullptr;
  if (residual && (residual->dtype() != DType::f32 || residual->shape() != out_shape))
    fail("node '{}' (Conv + residual Add): the residual is {} {}, the convolution's output f32 {}", node.name,
         dtype_name(residual->dtype()), shape_str(residual->shape()), shape_str(out_shape));
  return residual;
}

}  // namespace

ops::ConvShape ConvLinearNode::shape_for(const Node& node, const Tensor& x) const {
  return ops::conv_shape(node, ops::channels_last(node) ? ops::channels_first_shape(x.shape()) : x.shape(),
                         weight_shape);
}

const ConvLinearNode::Call& ConvLinearNode::call_for(const Node& node, const Tensor& x) const {
  return calls_.get(node, x, [&] {
    Call c;
    c.shape = shape_for(node, x);
    c.nhwc = ops::channels_last(node);
    c.out_shape = c.nhwc ? ops::channels_last_shape(c.shape.output_shape()) : c.shape.output_shape();
    c.pool = node.attrs.get_ints(kPoolAttr);
    c.global_pool = node.attrs.get_int(kGlobalPoolAttr, 0) != 0;
    c.residual_relu = node.attrs.get_int("sparse24_residual_relu", 0) != 0;
    return c;
  });
}

DepthwiseConvNode::DepthwiseConvNode(std::vector<int64_t> shape, std::vector<float> by_tap,
                                     std::vector<float> bias_values)
    : weight_shape(std::move(shape)), weight_by_tap(std::move(by_tap)), bias(std::move(bias_values)) {
  if (!consistent(weight_shape, weight_by_tap.size(), bias.size()))
    fail("depthwise convolution: weight {} with {} values and {} biases, expected [C][1][k...] and C biases",
         shape_str(weight_shape), weight_by_tap.size(), bias.size());
}

bool DepthwiseConvNode::consistent(const std::vector<int64_t>& shape, size_t values, size_t biases) {
  return shape.size() >= 3 && shape[1] == 1 &&
         std::all_of(shape.begin(), shape.end(), [](int64_t d) { return d > 0; }) &&
         shape_numel(shape) == int64_t(values) && (biases == 0 || int64_t(biases) == shape[0]);
}

std::shared_ptr<DepthwiseConvNode> DepthwiseConvNode::from_onnx(const Tensor& weight,
                                                                std::vector<float> bias) {
  if (weight.dtype() != DType::f32 || weight.rank() < 3 || weight.dim(0) == 0)
    fail("depthwise convolution: weight {} {}, expected f32 [C][1][k...]", dtype_name(weight.dtype()),
         shape_str(weight.shape()));
  const int64_t C = weight.dim(0), taps = weight.numel() / C;
  const float* w = weight.data<float>();
  std::vector<float> by_tap(size_t(C * taps));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < taps; ++t) by_tap[size_t(t * C + c)] = w[c * taps + t];
  return std::make_shared<DepthwiseConvNode>(weight.shape(), std::move(by_tap), std::move(bias));
}

void DepthwiseConvNode::run(const Node& node, std::span<const Tensor* const> inputs,
                            std::span<Tensor> outputs) const {
  const Tensor& x = *inputs[0];
  if (x.dtype() != DType::f32)
    fail("node '{}' (Conv): input is {}, expected f32", node.name, dtype_name(x.dtype()));
  const Call& c = calls_.get(node, x, [&] {
    Call call;
    call.shape = ops::conv_shape(node, ops::channels_first_shape(x.shape()), weight_shape);
    call.out_shape = ops::channels_last_shape(call.shape.output_shape());
    if (node.attrs.get_int(ops::kDepthwiseReluAttr, 0) != 0)
      call.epilogue.kind = ops::DepthwiseEpilogue::relu;
    if (const std::vector<float> clip = node.attrs.get_floats(ops::kDepthwiseClipAttr); clip.size() == 2)
      call.epilogue = {ops::DepthwiseEpilogue::clip, clip[0], clip[1]};
    return call;
  });
  outputs[0] = Tensor::uninitialized(DType::f32, c.out_shape);
  ops::conv_depthwise_nhwc(c.shape, x.data<float>(), weight_by_tap.data(),
                           bias.empty() ? nullptr : bias.data(), outputs[0].data<float>(), c.epilogue);
}

void ConvLinearNode::run(const Node& node, std::span<const Tensor* const> inputs,
                         std::span<Tensor> outputs) const {
  const Tensor& x = *inputs[0];
  if (x.dtype() != DType::f32)
    fail("node '{}' (Conv): input is {}, expected f32", node.name, dtype_name(x.dtype()));
  const Call& c = call_for(node, x);
  if (!c.pool.empty()) return run_pooled(node, inputs, c, outputs[0]);
  if (c.global_pool) return run_global_pooled(node, inputs, c, outputs[0]);
  run_unpooled(node, inputs, c, outputs[0]);
}

// The convolution alone (with its fused residual), whatever pool the node's attributes add after it.
void ConvLinearNode::run_unpooled(const Node& node, std::span<const Tensor* const> inputs, const Call& c,
                                  Tensor& out) const {
  const Tensor& x = *inputs[0];
  const ops::ConvShape& shape = c.shape;
  out = Tensor::uninitialized(DType::f32, c.out_shape);
  const Tensor* residual = fused_residual(node, inputs, c.out_shape);
  float* y = out.data<float>();
  const LinearLayer& l = *layer;
  if (l.tactic() == Tactic::dense_direct) {
    run_direct(node, c, x, 1, 1, y);
    if (residual) ops::residual_add_f32(y, residual->data<float>(), out.numel(), c.residual_relu);
    return;
  }
  if (l.tactic() == Tactic::dense_onednn) {
    std::call_once(onednn_once_, [&] {
      onednn_ = std::make_unique<OnednnConv>(l.weight(), weight_shape, l.bias(), l.activation());
    });
    onednn_->run(shape, x.data<float>(), y, c.nhwc, residual ? residual->data<float>() : nullptr,
                 c.residual_relu);
    return;
  }
  const float* r = residual ? residual->data<float>() : nullptr;
  if (!run_as_gemm(c, x, y, r) && residual) ops::residual_add_f32(y, r, out.numel(), c.residual_relu);
}

bool ConvLinearNode::supports_direct(const Node& node) const {
  // Its kernels fuse a ReLU or a ReLU6 only (direct_conv_weights).
  const Activation act = layer->activation();
  return (act == Activation::none || act == Activation::relu || act == Activation::relu6) &&
         weight_shape.size() == 4 && node.attrs.get_int("group", 1) == 1 &&
         weight_shape[1] * weight_shape[2] * weight_shape[3] <= ops::kDirectConvMaxK &&
         ops::channels_last(node);
}

void ConvLinearNode::run_direct(const Node& node, const Call& c, const Tensor& x, int64_t pool_h,
                                int64_t pool_w, float* y) const {
  const ops::ConvShape& shape = c.shape;
  if (!c.nhwc || !ops::direct_conv_applies(shape))
    fail("node '{}' (Conv): the dense-direct tactic runs 2-D channels-last convolutions with K <= {}",
         node.name, ops::kDirectConvMaxK);
  std::call_once(direct_once_, [&] {
    direct_ = std::make_unique<ops::DirectConvWeights>(
        ops::direct_conv_weights(layer->weight(), layer->bias(), layer->activation()));
  });
  ops::conv_direct_nhwc(*direct_, shape, pool_h, pool_w, x.data<float>(), y);
}

namespace {

// The patch matrix of a 2-D channels-last convolution, read in place by the 2:4 kernels.
cpu::ConvPatches patches(const ops::ConvShape& shape, const Tensor& x) {
  const auto& w = shape.window;
  cpu::ConvPatches p;
  p.x = x.data<float>();
  p.N = shape.batch;
  p.C = shape.in_channels;
  p.H = w.in[0], p.W = w.in[1], p.OH = w.out[0], p.OW = w.out[1], p.KH = w.kernel[0], p.KW = w.kernel[1];
  p.stride_h = w.strides[0], p.stride_w = w.strides[1], p.dilation_h = w.dilations[0];
  p.dilation_w = w.dilations[1], p.pad_top = w.pads_begin[0], p.pad_left = w.pads_begin[1];
  return p;
}

}  // namespace

// The convolution followed by its fused max pool (fuse_conv_pool): in one pass with the dense-direct tactic;
// on a 2:4 patch kernel, the pool as the kernel call's second phase (cpu::Spmm24Args::then: no team of its
// own, each thread pooling about the rows its core wrote; the demo's CNN at batch 1: its MaxPool pass took
// 1.5 us); with any other, the convolution into a scratch tensor and then the pool.
void ConvLinearNode::run_pooled(const Node& node, std::span<const Tensor* const> inputs, const Call& c,
                                Tensor& out) const {
  const Tensor& x = *inputs[0];
  const ops::ConvShape& shape = c.shape;
  const std::vector<int64_t>& pool = c.pool;
  if (pool.size() != 2 || pool[0] < 1 || pool[1] < 1 || !c.nhwc || shape.window.rank() != 2)
    fail("node '{}' (Conv + MaxPool): the fused pool needs a 2-D channels-last convolution and a 2-D window",
         node.name);
  const auto& w = shape.window;
  const std::vector<int64_t> pooled = {shape.batch, w.out[0] / pool[0], w.out[1] / pool[1],
                                       shape.out_channels};
  if (layer->tactic() == Tactic::dense_direct) {
    out = Tensor::uninitialized(DType::f32, pooled);
    run_direct(node, c, x, pool[0], pool[1], out.data<float>());
    return;
  }
  out = Tensor::uninitialized(DType::f32, pooled);
  const int64_t M = shape.batch * shape.out_pixels(), C = shape.out_channels;
  const int64_t bands = pooled[0] * pooled[1];  // pooled rows
  Tensor full;                                  // the convolution's output
  const auto pool_bands = [&](int64_t begin, int64_t end) {
    ops::max_pool_bands_nhwc(full.data<float>(), w.out[0], w.out[1], C, pool[0], pool[1], begin, end,
                             out.data<float>());
  };
  if (inputs.size() == 1 && shape.groups == 1 && M >= 64 && layer->activation() != Activation::gelu) {
    full = Tensor::uninitialized(DType::f32, c.out_shape);
    if (layer->run_patches(
            patches(shape, x), M, full.data<float>(), C, nullptr, false,
            [&](int t, int threads) { pool_bands(bands * t / threads, bands * (t + 1) / threads); }))
      return;
  }
  run_unpooled(node, inputs, c, full);
  ops::parallel_for(bands, full.numel() >= ops::kParallelMinElements,
                    [&](int64_t band) { pool_bands(band, band + 1); });
}

// The node a fused GlobalAveragePool runs as when it takes a pass of its own, made at the first call.
const Node& ConvLinearNode::pool_node(const Node& conv) const {
  std::call_once(pool_once_, [&] {
    pool_node_.name = conv.name + "/GlobalAveragePool";
    pool_node_.op = "GlobalAveragePool";
    pool_node_.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
  });
  return pool_node_;
}

// The convolution followed by its fused GlobalAveragePool (fuse_conv_global_pool): on a 2:4 patch kernel
// each output pixel is summed into the pool as it is stored and Y is never written (the CNN at batch 64:
// the pool's own pass took 0.05 of 2.9 ms; at batch 1, 2 threads, 0.002 of 0.005, reading the half of Y
// the other core wrote); otherwise the convolution into a scratch tensor, then the pool.
void ConvLinearNode::run_global_pooled(const Node& node, std::span<const Tensor* const> inputs, const Call& c,
                                       Tensor& out) const {
  const ops::ConvShape& shape = c.shape;
  if (!c.nhwc || shape.window.rank() != 2)
    fail("node '{}' (Conv + GlobalAveragePool): the fused pool needs a 2-D channels-last convolution",
         node.name);
  const Tensor& x = *inputs[0];
  const Tensor* residual = fused_residual(node, inputs, c.out_shape);
  const int64_t pixels = shape.out_pixels(), C = shape.out_channels;
  out = Tensor(DType::f32, {shape.batch, C, 1, 1});  // zeros: the kernel adds into it
  if (shape.groups == 1 && layer->activation() != Activation::gelu) {
    cpu::ConvPatches p = patches(shape, x);
    if (layer->pool_patches(p, shape.batch * pixels, out.data<float>(), C,
                            residual ? residual->data<float>() : nullptr, c.residual_relu)) {
      float* y = out.data<float>();
      const float scale = 1.0f / float(pixels);
      for (int64_t i = 0; i < out.numel(); ++i) y[i] *= scale;
      return;
    }
  }
  Tensor full;
  run_unpooled(node, inputs, c, full);
  const Tensor* pool_in[1] = {&full};
  ops::run_global_average_pool(pool_node(node), pool_in, std::span<Tensor>(&out, 1));
}

bool ConvLinearNode::run_as_gemm(const Call& c, const Tensor& x, float* y, const float* residual) const {
  const LinearLayer& l = *layer;
  const ops::ConvShape& shape = c.shape;
  const bool nhwc = c.nhwc;
  // 2:4 on channels-last input with at least one full panel of pixels: patches read in place, no im2col.
  const auto& w = shape.window;
  if (nhwc && w.rank() == 2 && shape.groups == 1 && shape.batch * shape.out_pixels() >= 64) {
    const cpu::ConvPatches p = patches(shape, x);
    // The residual is added in the kernel's store, not in a pass of its own (not after GELU, which the
    // engine applies after the kernel).
    const bool fuse = residual && l.activation() != Activation::gelu;
    if (l.run_patches(p, shape.batch * shape.out_pixels(), y, shape.out_channels, fuse ? residual : nullptr,
                      c.residual_relu))
      return fuse;
  }
  ops::conv_as_gemm(
      shape, x.data<float>(),
      [&l](int64_t, int64_t M, int64_t, int64_t, const float* X, int64_t ldx, float* Y, int64_t ldy) {
        l.run(M, X, ldx, Y, ldy);
      },
      nullptr, y, nhwc);
  return false;
}

LinearLayer* linear_layer(const Node& node) {
  auto* s = dynamic_cast<const LinearNode*>(node.state.get());
  return s ? s->layer.get() : nullptr;
}

namespace {

// Readers of each value (graph outputs count as a reader that cannot be fused away).
struct Uses {
  std::vector<std::vector<int>> readers;
  std::vector<bool> is_output;
  explicit Uses(const Graph& g) : readers(g.values.size()), is_output(g.values.size(), false) {
    for (size_t i = 0; i < g.nodes.size(); ++i)
      for (ValueId v : g.nodes[i].inputs)
        if (v != kNoValue) readers[size_t(v)].push_back(int(i));
    for (ValueId v : g.outputs) is_output[size_t(v)] = true;
  }
  // The single node reading v, when v is read once and is not a graph output; else -1.
  int sole_reader(ValueId v) const {
    return !is_output[size_t(v)] && readers[size_t(v)].size() == 1 ? readers[size_t(v)][0] : -1;
  }
};

const Tensor* constant(const Graph& g, ValueId v) {
  return v == kNoValue ? nullptr : g.values[size_t(v)].constant ? &*g.values[size_t(v)].constant : nullptr;
}

// Values of a constant that holds exactly n elements along its last axis (all other axes 1), else empty.
std::optional<std::vector<float>> as_vector(const Tensor* t, int64_t n) {
  if (!t || t->dtype() != DType::f32 || t->numel() != n) return std::nullopt;
  for (int i = 0; i + 1 < t->rank(); ++i)
    if (t->dim(i) != 1) return std::nullopt;
  return std::vector<float>(t->data<float>(), t->data<float>() + n);
}

std::optional<float> as_scalar(const Tensor* t) {
  if (!t || t->dtype() != DType::f32 || t->numel() != 1) return std::nullopt;
  return t->data<float>()[0];
}

// A Clip's bounds [lo, hi] when both are known when the model loads: from its attributes (before opset 11)
// or its constant scalar inputs; an absent one is open (-inf or +inf). nullopt where an input is not
// constant.
std::optional<std::pair<float, float>> constant_clip_bounds(const Graph& g, const Node& clip) {
  const auto [lo_attr, hi_attr] = ops::clip_attribute_bounds(clip);
  std::optional<float> lo = lo_attr, hi = hi_attr;
  const auto bound = [&](size_t i, std::optional<float>& v) {
    if (clip.opset >= 11 && clip.inputs.size() > i && clip.inputs[i] != kNoValue)
      v = as_scalar(constant(g, clip.inputs[i]));
  };
  bound(1, lo);
  bound(2, hi);
  if (!lo || !hi) return std::nullopt;
  return std::pair{*lo, *hi};
}

// The epilogue activation a Relu, Gelu (exact) or Clip node computes, where a layer has one for it:
// Clip(0, +inf) is a ReLU and Clip(0, 6) a ReLU6 (MobileNetV2's, as PyTorch exports it).
std::optional<Activation> epilogue_activation(const Graph& g, const Node& n) {
  if (n.op == "Relu") return Activation::relu;
  if (n.op == "Gelu" && n.attrs.get_string("approximate", "none") == "none") return Activation::gelu;
  if (n.op != "Clip") return std::nullopt;
  const auto bounds = constant_clip_bounds(g, n);
  if (!bounds || bounds->first != 0.0f) return std::nullopt;
  if (bounds->second == 6.0f) return Activation::relu6;
  if (bounds->second == std::numeric_limits<float>::infinity()) return Activation::relu;
  return std::nullopt;
}

void erase_marked(Graph& g, const std::vector<bool>& dead) {
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!dead[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

int fold_constants(Graph& g) {
  std::vector<bool> dead(g.nodes.size(), false);
  int folded = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (n.state) continue;
    bool all_const = true;
    for (ValueId v : n.inputs) all_const &= v == kNoValue || constant(g, v) != nullptr;
    const OpInfo* op = find_op(n.op);
    if (!all_const || !op || n.op == "Dropout") continue;
    std::vector<const Tensor*> in;
    for (ValueId v : n.inputs) in.push_back(constant(g, v));
    std::vector<Tensor> out(n.outputs.size());
    op->run(n, in, out);
    for (size_t o = 0; o < n.outputs.size(); ++o)
      if (n.outputs[o] != kNoValue) g.values[size_t(n.outputs[o])].constant = std::move(out[o]);
    dead[i] = true;
    ++folded;
  }
  erase_marked(g, dead);
  return folded;
}

// Conv/Gemm -> BatchNormalization with constant parameters: scale the weight rows, shift the bias.
int fold_batchnorm(Graph& g) {
  Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int folded = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& prod = g.nodes[i];
    if ((prod.op != "Conv" && prod.op != "Gemm") || prod.state) continue;
    int r = uses.sole_reader(prod.outputs[0]);
    if (r < 0 || g.nodes[size_t(r)].op != "BatchNormalization" || g.nodes[size_t(r)].outputs.size() != 1)
      continue;
    Node& bn = g.nodes[size_t(r)];
    const Tensor* w = constant(g, prod.inputs[1]);
    if (!w || w->dtype() != DType::f32) continue;
    if (prod.op == "Gemm" && (prod.attrs.get_int("transB", 0) != 1 || prod.attrs.get_float("alpha", 1) != 1))
      continue;
    const int64_t C = w->dim(0);
    auto scale = as_vector(constant(g, bn.inputs[1]), C), shift = as_vector(constant(g, bn.inputs[2]), C);
    auto mean = as_vector(constant(g, bn.inputs[3]), C), var = as_vector(constant(g, bn.inputs[4]), C);
    if (!scale || !shift || !mean || !var) continue;
    std::vector<float> bias(size_t(C), 0.0f);
    if (prod.inputs.size() > 2 && prod.inputs[2] != kNoValue) {
      auto b = as_vector(constant(g, prod.inputs[2]), C);
      if (!b) continue;
      bias = *b;
      if (prod.op == "Gemm") {
        float beta = prod.attrs.get_float("beta", 1);
        for (float& x : bias) x *= beta;
      }
    }
    const float eps = bn.attrs.get_float("epsilon", 1e-5f);
    Tensor nw = *w;
    const int64_t per = w->numel() / C;
    for (int64_t c = 0; c < C; ++c) {
      const float s = (*scale)[size_t(c)] / std::sqrt((*var)[size_t(c)] + eps);
      for (int64_t j = 0; j < per; ++j) nw.data<float>()[c * per + j] *= s;
      bias[size_t(c)] = (bias[size_t(c)] - (*mean)[size_t(c)]) * s + (*shift)[size_t(c)];
    }
    ValueId wv = g.add_value(g.values[size_t(prod.inputs[1])].name + "_bnfolded");
    g.values[size_t(wv)].constant = std::move(nw);
    ValueId bv = g.add_value(bn.name + "_bias");
    Tensor bt(DType::f32, {C});
    std::copy(bias.begin(), bias.end(), bt.data<float>());
    g.values[size_t(bv)].constant = std::move(bt);
    prod.inputs.resize(3);
    prod.inputs[1] = wv;
    prod.inputs[2] = bv;
    if (prod.op == "Gemm") prod.attrs.set("beta", 1.0f);
    prod.outputs[0] = bn.outputs[0];
    dead[size_t(r)] = true;
    ++folded;
  }
  erase_marked(g, dead);
  return folded;
}

// Gemm (transA = 0, constant B, bias-like C) and MatMul (constant 2-D B) become LinearNodes.
int lower_linear(Graph& g) {
  int lowered = 0;
  for (Node& n : g.nodes) {
    if (n.state || (n.op != "Gemm" && n.op != "MatMul")) continue;
    const Tensor* b = constant(g, n.inputs[1]);
    if (!b || b->dtype() != DType::f32 || b->rank() != 2 || constant(g, n.inputs[0])) continue;
    Tensor w;  // canonical [N][K]
    std::vector<float> bias;
    if (n.op == "MatMul") {
      w = Tensor(DType::f32, {b->dim(1), b->dim(0)});
      for (int64_t k = 0; k < b->dim(0); ++k)
        for (int64_t j = 0; j < b->dim(1); ++j)
          w.data<float>()[j * b->dim(0) + k] = b->data<float>()[k * b->dim(1) + j];
    } else {
      if (n.attrs.get_int("transA", 0) != 0) continue;
      const bool tb = n.attrs.get_int("transB", 0) != 0;
      const int64_t N = tb ? b->dim(0) : b->dim(1), K = tb ? b->dim(1) : b->dim(0);
      const float alpha = n.attrs.get_float("alpha", 1.0f), beta = n.attrs.get_float("beta", 1.0f);
      if (n.inputs.size() > 2 && n.inputs[2] != kNoValue) {
        auto c = as_vector(constant(g, n.inputs[2]), N);
        if (!c) continue;
        bias = *c;
        for (float& x : bias) x *= beta;
      }
      w = Tensor(DType::f32, {N, K});
      for (int64_t j = 0; j < N; ++j)
        for (int64_t k = 0; k < K; ++k)
          w.data<float>()[j * K + k] =
              alpha * (tb ? b->data<float>()[j * K + k] : b->data<float>()[k * N + j]);
    }
    auto state = std::make_shared<LinearNode>();
    state->layer = std::make_shared<LinearLayer>(std::move(w), std::move(bias), Activation::none);
    state->source_op = n.op;
    n.inputs.resize(1);
    n.state = std::move(state);
    ++lowered;
  }
  return lowered;
}

// Conv with groups = 1 and a constant f32 weight (bias constant or absent) becomes a ConvLinearNode.
int lower_conv(Graph& g) {
  int lowered = 0;
  for (Node& n : g.nodes) {
    if (n.state || n.op != "Conv" || n.attrs.get_int("group", 1) != 1) continue;
    const Tensor* w = constant(g, n.inputs[1]);
    if (!w || w->dtype() != DType::f32 || w->rank() < 3 || constant(g, n.inputs[0])) continue;
    std::vector<float> bias;
    if (n.inputs.size() > 2 && n.inputs[2] != kNoValue) {
      auto b = as_vector(constant(g, n.inputs[2]), w->dim(0));
      if (!b) continue;
      bias = *b;
    }
    auto state = std::make_shared<ConvLinearNode>();
    state->layer =
        std::make_shared<LinearLayer>(ops::conv_weight_canonical(*w), std::move(bias), Activation::none);
    state->source_op = "Conv";
    state->weight_shape = w->shape();
    n.inputs.resize(1);
    n.state = std::move(state);
    ++lowered;
  }
  return lowered;
}

// True when node `n` computes x·0.5·(1 + erf(x/√2)) of value x, as PyTorch exports GELU:
// Div(x, √2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(., 0.5) (Mul operands in either order).
struct GeluMatch {
  std::vector<int> nodes;  // the five nodes, last is the output
};
std::optional<GeluMatch> match_gelu(const Graph& g, const Uses& uses, ValueId x) {
  auto other = [&](const Node& n, ValueId v) { return n.inputs[0] == v ? n.inputs[1] : n.inputs[0]; };
  const auto& readers = uses.readers[size_t(x)];
  if (readers.size() != 2 || uses.is_output[size_t(x)]) return std::nullopt;
  for (int d : readers) {
    const Node& div = g.nodes[size_t(d)];
    auto s2 = div.op == "Div" && div.inputs[0] == x ? as_scalar(constant(g, div.inputs[1])) : std::nullopt;
    if (!s2 || std::fabs(*s2 - float(M_SQRT2)) > 1e-4f) continue;
    int e = uses.sole_reader(div.outputs[0]);
    if (e < 0 || g.nodes[size_t(e)].op != "Erf") continue;
    int a = uses.sole_reader(g.nodes[size_t(e)].outputs[0]);
    if (a < 0 || g.nodes[size_t(a)].op != "Add") continue;
    auto one = as_scalar(constant(g, other(g.nodes[size_t(a)], g.nodes[size_t(e)].outputs[0])));
    if (!one || *one != 1.0f) continue;
    int m1 = uses.sole_reader(g.nodes[size_t(a)].outputs[0]);
    if (m1 < 0 || g.nodes[size_t(m1)].op != "Mul" ||
        other(g.nodes[size_t(m1)], g.nodes[size_t(a)].outputs[0]) != x)
      continue;
    if (std::find(readers.begin(), readers.end(), m1) == readers.end()) continue;
    int m2 = uses.sole_reader(g.nodes[size_t(m1)].outputs[0]);
    if (m2 < 0 || g.nodes[size_t(m2)].op != "Mul") continue;
    auto half = as_scalar(constant(g, other(g.nodes[size_t(m2)], g.nodes[size_t(m1)].outputs[0])));
    if (!half || *half != 0.5f) continue;
    return GeluMatch{{d, e, a, m1, m2}};
  }
  return std::nullopt;
}

// Linear -> Add(constant bias) -> Relu | Gelu | decomposed GELU, each step only when the value has no
// other reader.
void fuse_epilogues(Graph& g, OptimizeReport& rep) {
  Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    LinearLayer* layer = linear_layer(g.nodes[i]);
    if (!layer || dead[i]) continue;
    Node& lin = g.nodes[i];
    int r = uses.sole_reader(lin.outputs[0]);
    if (r >= 0 && g.nodes[size_t(r)].op == "Add" && layer->activation() == Activation::none) {
      Node& add = g.nodes[size_t(r)];
      ValueId other = add.inputs[0] == lin.outputs[0] ? add.inputs[1] : add.inputs[0];
      if (auto b = as_vector(constant(g, other), layer->N())) {
        layer->add_bias(*b);
        lin.outputs[0] = add.outputs[0];
        dead[size_t(r)] = true;
        ++rep.fused_bias;
        r = uses.sole_reader(lin.outputs[0]);  // readers of the Add's output, unchanged by the fusion
      }
    }
    if (layer->activation() != Activation::none) continue;
    if (const auto act = r >= 0 ? epilogue_activation(g, g.nodes[size_t(r)]) : std::nullopt) {
      layer->set_activation(*act);
      lin.outputs[0] = g.nodes[size_t(r)].outputs[0];
      dead[size_t(r)] = true;
      ++rep.fused_activations;
    } else if (auto m = match_gelu(g, uses, lin.outputs[0])) {
      layer->set_activation(Activation::gelu);
      lin.outputs[0] = g.nodes[size_t(m->nodes.back())].outputs[0];
      for (int d : m->nodes) dead[size_t(d)] = true;
      ++rep.fused_activations;
    }
  }
  erase_marked(g, dead);
}

// Attention as BERT exports it, per layer:
//   q = Transpose[0,2,1,3](Reshape(Q, [0,0,H,D]))   k = Transpose[0,2,3,1](Reshape(K, ..))   v like q
//   p = Softmax[-1](Add(Div(MatMul(q, k), c) | Mul(MatMul(q, k), c) | MatMul(q, k), mask)?)
//   out = Reshape(Transpose[0,2,1,3](MatMul(p, v)), [0,0,H*D] | [0,0,-1])
// becomes one FusedAttention(Q, K, V, mask) node (engine/ops/attention.cc) with attributes heads and scale.
// Every intermediate must have no other reader.
struct HeadSplit {
  ValueId source = kNoValue;  // [B][S][H*D], before the Reshape
  int64_t heads = 0, dim = 0;
  std::vector<int> nodes;  // Reshape, Transpose
};

struct Producers {
  std::vector<int> of;
  explicit Producers(const Graph& g) : of(g.values.size(), -1) {
    for (size_t i = 0; i < g.nodes.size(); ++i)
      for (ValueId v : g.nodes[i].outputs)
        if (v != kNoValue) of[size_t(v)] = int(i);
  }
  // The node producing v when its op is `op` and v has no reader besides `reader`; else -1.
  int sole(const Graph& g, const Uses& uses, ValueId v, const char* op) const {
    const int p = v == kNoValue ? -1 : of[size_t(v)];
    if (p < 0 || g.nodes[size_t(p)].op != op || uses.is_output[size_t(v)] ||
        uses.readers[size_t(v)].size() != 1)
      return -1;
    return p;
  }
};

std::optional<std::vector<int64_t>> int_constant(const Graph& g, ValueId v) {
  const Tensor* t = constant(g, v);
  if (!t || t->dtype() != DType::i64 || t->rank() != 1) return std::nullopt;
  return std::vector<int64_t>(t->data<int64_t>(), t->data<int64_t>() + t->numel());
}

std::optional<HeadSplit> match_head_split(const Graph& g, const Uses& uses, const Producers& prod, ValueId v,
                                          const std::vector<int64_t>& perm) {
  const int t = prod.sole(g, uses, v, "Transpose");
  if (t < 0 || g.nodes[size_t(t)].attrs.get_ints("perm") != perm) return std::nullopt;
  const int r = prod.sole(g, uses, g.nodes[size_t(t)].inputs[0], "Reshape");
  if (r < 0 || g.nodes[size_t(r)].attrs.get_int("allowzero", 0) != 0) return std::nullopt;
  auto shape = int_constant(g, g.nodes[size_t(r)].inputs[1]);
  if (!shape || shape->size() != 4 || (*shape)[0] != 0 || (*shape)[1] != 0 || (*shape)[2] <= 0 ||
      (*shape)[3] <= 0)
    return std::nullopt;
  return HeadSplit{g.nodes[size_t(r)].inputs[0], (*shape)[2], (*shape)[3], {r, t}};
}

// Makes node lq the one linear layer Y = X · [Wq; Wk; Wv]ᵀ + [bq; bk; bv] when the three nodes are plain
// linear layers (no activation, not yet planned) of the same input and size. Returns false (and changes
// nothing) when they are not.
bool merge_projections(Graph& g, int lq, int lk, int lv) {
  const Node* n[3] = {&g.nodes[size_t(lq)], &g.nodes[size_t(lk)], &g.nodes[size_t(lv)]};
  LinearLayer* l[3];
  for (int i = 0; i < 3; ++i) {
    l[i] = linear_layer(*n[i]);
    if (!l[i] || dynamic_cast<const ConvLinearNode*>(n[i]->state.get()) ||
        l[i]->activation() != Activation::none || n[i]->inputs[0] != n[0]->inputs[0] ||
        l[i]->K() != l[0]->K() || l[i]->N() != l[0]->N())
      return false;
  }
  const int64_t N = l[0]->N(), K = l[0]->K();
  Tensor w(DType::f32, {3 * N, K});
  std::vector<float> bias(size_t(3 * N), 0.0f);
  for (int i = 0; i < 3; ++i) {
    std::copy_n(l[i]->weight().data<float>(), N * K, w.data<float>() + i * N * K);
    if (!l[i]->bias().empty()) std::copy(l[i]->bias().begin(), l[i]->bias().end(), bias.begin() + i * N);
  }
  auto state = std::make_shared<LinearNode>(*static_cast<const LinearNode*>(n[0]->state.get()));
  state->layer = std::make_shared<LinearLayer>(std::move(w), std::move(bias), Activation::none);
  Node& merged = g.nodes[size_t(lq)];
  merged.name += "+key+value";
  merged.state = state;
  return true;
}

int fuse_attention(Graph& g) {
  Uses uses(g);
  Producers prod(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int fused = 0;
  const std::vector<int64_t> bhsd = {0, 2, 1, 3}, bhds = {0, 2, 3, 1};
  for (size_t si = 0; si < g.nodes.size(); ++si) {
    const Node& softmax = g.nodes[si];
    if (softmax.op != "Softmax") continue;
    // Over the last axis of the rank-4 scores (before opset 13 the default axis is 1).
    const int64_t axis = softmax.attrs.get_int("axis", softmax.opset < 13 ? 1 : -1);
    if (axis != -1 && axis != 3) continue;
    std::vector<int> nodes = {int(si)};
    // The scores: MatMul(q, k), then optionally a scalar Div or Mul. Returns the MatMul node (or -1) and
    // the nodes and scale it passed.
    auto scores_from = [&](ValueId v, std::vector<int>& passed, float& scale) {
      for (const char* op : {"Div", "Mul"})
        if (int d = prod.sole(g, uses, v, op); d >= 0) {
          auto c = as_scalar(constant(g, g.nodes[size_t(d)].inputs[1]));
          if (!c || (std::string(op) == "Div" && *c == 0.0f)) return -1;
          scale = std::string(op) == "Div" ? 1.0f / *c : *c;
          v = g.nodes[size_t(d)].inputs[0];
          passed.push_back(d);
          break;
        }
      const int mm = prod.sole(g, uses, v, "MatMul");
      if (mm >= 0) passed.push_back(mm);
      return mm;
    };
    ValueId mask = kNoValue;
    float scale = 1.0f;
    int qk = -1;
    if (int a = prod.sole(g, uses, softmax.inputs[0], "Add"); a >= 0) {
      // Add(scores, mask) in either order: the scores are the operand that leads back to the MatMul.
      nodes.push_back(a);
      for (int side = 0; side < 2 && qk < 0; ++side) {
        std::vector<int> passed;
        scale = 1.0f;
        qk = scores_from(g.nodes[size_t(a)].inputs[size_t(side)], passed, scale);
        if (qk < 0) continue;
        mask = g.nodes[size_t(a)].inputs[size_t(1 - side)];
        nodes.insert(nodes.end(), passed.begin(), passed.end());
      }
    } else {
      qk = scores_from(softmax.inputs[0], nodes, scale);
    }
    if (qk < 0) continue;
    auto q = match_head_split(g, uses, prod, g.nodes[size_t(qk)].inputs[0], bhsd);
    auto k = match_head_split(g, uses, prod, g.nodes[size_t(qk)].inputs[1], bhds);
    const int pv = uses.sole_reader(softmax.outputs[0]);
    if (!q || !k || pv < 0 || g.nodes[size_t(pv)].op != "MatMul" ||
        g.nodes[size_t(pv)].inputs[0] != softmax.outputs[0])
      continue;
    auto v = match_head_split(g, uses, prod, g.nodes[size_t(pv)].inputs[1], bhsd);
    const int merge_t = uses.sole_reader(g.nodes[size_t(pv)].outputs[0]);
    if (!v || merge_t < 0 || g.nodes[size_t(merge_t)].op != "Transpose" ||
        g.nodes[size_t(merge_t)].attrs.get_ints("perm") != bhsd)
      continue;
    const int merge_r = uses.sole_reader(g.nodes[size_t(merge_t)].outputs[0]);
    if (merge_r < 0 || g.nodes[size_t(merge_r)].op != "Reshape" ||
        g.nodes[size_t(merge_r)].inputs[0] != g.nodes[size_t(merge_t)].outputs[0])
      continue;
    const int64_t H = q->heads, D = q->dim;
    auto merged = int_constant(g, g.nodes[size_t(merge_r)].inputs[1]);
    if (k->heads != H || v->heads != H || k->dim != D || v->dim != D || !merged || merged->size() != 3 ||
        (*merged)[0] != 0 || (*merged)[1] != 0 || ((*merged)[2] != H * D && (*merged)[2] != -1))
      continue;
    if (mask != kNoValue && (mask == q->source || mask == k->source || mask == v->source)) continue;
    // Q, K and V projections of one input become one layer with the three weights stacked: X is read (and
    // packed by the 2:4 kernels) once, and the GEMM is three times wider.
    ValueId qkv = kNoValue;
    const int lq = prod.of[size_t(q->source)], lk = prod.of[size_t(k->source)],
              lv = prod.of[size_t(v->source)];
    if (lq >= 0 && lk >= 0 && lv >= 0 && merge_projections(g, lq, lk, lv)) {
      qkv = q->source;
      dead[size_t(lk)] = dead[size_t(lv)] = true;
    }
    // The fused node takes the final Reshape's place: every input is produced before that point.
    for (int n : {pv, merge_t}) nodes.push_back(n);
    for (const HeadSplit* hs : {&*q, &*k, &*v}) nodes.insert(nodes.end(), hs->nodes.begin(), hs->nodes.end());
    Node fusedn;
    fusedn.name = g.nodes[size_t(pv)].name + "/fused_attention";
    fusedn.op = "FusedAttention";
    fusedn.opset = softmax.opset;
    fusedn.inputs = qkv != kNoValue ? std::vector<ValueId>{qkv, kNoValue, kNoValue, mask}
                                    : std::vector<ValueId>{q->source, k->source, v->source, mask};
    if (mask == kNoValue) fusedn.inputs.pop_back();
    fusedn.outputs = g.nodes[size_t(merge_r)].outputs;
    fusedn.attrs.set("heads", H);
    fusedn.attrs.set("scale", scale);
    for (int n : nodes) dead[size_t(n)] = true;
    g.nodes[size_t(merge_r)] = std::move(fusedn);
    ++fused;
  }
  erase_marked(g, dead);
  return fused;
}

// Add(A, R) whose only reader is LayerNormalization(sum, Scale, B) with one output becomes one
// AddLayerNormalization(A, R, Scale, B) node at the LayerNormalization's place.
int fuse_add_layer_norm(Graph& g) {
  Uses uses(g);
  Producers prod(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int fused = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& ln = g.nodes[i];
    if (ln.op != "LayerNormalization" || ln.outputs.size() != 1 || ln.inputs.size() < 2) continue;
    const int a = prod.sole(g, uses, ln.inputs[0], "Add");
    if (a < 0 || dead[size_t(a)]) continue;
    const Node& add = g.nodes[size_t(a)];
    std::vector<ValueId> inputs = {add.inputs[0], add.inputs[1], ln.inputs[1],
                                   ln.inputs.size() > 2 ? ln.inputs[2] : kNoValue};
    ln.op = "AddLayerNormalization";
    ln.inputs = std::move(inputs);
    dead[size_t(a)] = true;
    ++fused;
  }
  erase_marked(g, dead);
  return fused;
}

// A depthwise Conv's constant bias: empty without one, nullopt when it is not a constant f32 [C].
std::optional<std::vector<float>> depthwise_bias(const Graph& g, const Node& n, int64_t C) {
  if (n.inputs.size() < 3 || n.inputs[2] == kNoValue) return std::vector<float>{};
  return as_vector(constant(g, n.inputs[2]), C);
}

// 2-D convolutions run channels-last ([N][H][W][C]), the layout oneDNN's convolutions and the im2col GEMM
// compute in, and so do the pools, activations and residual Adds between them: a CNN then pays one
// transpose where it enters the section and one where it leaves (GlobalAveragePool leaves for free: its
// [N][C][1][1] output is the same in both layouts), not a reorder in and out of every convolution.
// Returns the number of convolutions moved.
int to_channels_last(Graph& g) {
  const size_t original_values = g.values.size();
  std::vector<bool> nhwc(original_values, false), is_output(original_values, false);
  for (ValueId v : g.outputs) is_output[size_t(v)] = true;
  std::map<ValueId, ValueId> as_last, as_first;  // transposed copies already made
  std::vector<Node> nodes;
  auto transposed = [&](ValueId v, bool to_last) {
    auto& made = to_last ? as_last : as_first;
    if (auto it = made.find(v); it != made.end()) return it->second;
    const std::string name = g.values[size_t(v)].name + (to_last ? "/nhwc" : "/nchw");
    const ValueId t = g.add_value(name);
    Node n;
    n.name = name;
    n.op = "Transpose";
    n.inputs = {v};
    n.outputs = {t};
    n.attrs.set("perm", to_last ? std::vector<int64_t>{0, 2, 3, 1} : std::vector<int64_t>{0, 3, 1, 2});
    nodes.push_back(std::move(n));
    made[v] = t;
    return t;
  };
  auto last = [&](ValueId v) { return v != kNoValue && size_t(v) < original_values && nhwc[size_t(v)]; };
  auto scalar = [&](ValueId v) {
    const Tensor* t = constant(g, v);
    return t && t->numel() == 1;
  };
  int moved = 0;
  for (Node& n : g.nodes) {
    bool feeds_output = false;
    for (ValueId v : n.outputs) feeds_output |= v != kNoValue && is_output[size_t(v)];
    const auto* conv = dynamic_cast<const ConvLinearNode*>(n.state.get());
    const bool one_output = n.outputs.size() == 1;
    bool out_last = false;  // the node writes channels-last
    if (n.op == "GlobalAveragePool" && last(n.inputs[0])) {
      // Its [N][C][1][1] output is the same in both layouts, so it reads channels-last even as an output.
      n.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
    } else if (feeds_output) {
    } else if (conv && conv->weight_shape.size() == 4) {
      if (!last(n.inputs[0])) n.inputs[0] = transposed(n.inputs[0], true);
      n.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
      out_last = true;
      ++moved;
    } else if (const Tensor* w = n.op == "Conv" && !n.state && one_output && n.inputs.size() >= 2
                                     ? constant(g, n.inputs[1])
                                     : nullptr;
               w && w->dtype() == DType::f32 && w->rank() == 4 && w->dim(1) == 1 &&
               n.attrs.get_int("group", 1) == w->dim(0) && depthwise_bias(g, n, w->dim(0))) {
      // A depthwise convolution (one input channel per output channel: group = IC = OC), which has no GEMM
      // to lower to: channels-last (a DepthwiseConvNode, lower_depthwise) it keeps a MobileNet block in the
      // section.
      if (!last(n.inputs[0])) n.inputs[0] = transposed(n.inputs[0], true);
      n.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
      out_last = true;
    } else if ((n.op == "MaxPool" || n.op == "AveragePool") && one_output && last(n.inputs[0]) &&
               n.attrs.get_ints("kernel_shape").size() == 2) {
      n.attrs.set(ops::kLayoutAttr, std::string("NHWC"));
      out_last = true;
    } else if (n.op == "Concat" && one_output && !n.inputs.empty() &&
               std::all_of(n.inputs.begin(), n.inputs.end(), last) && n.attrs.has("axis")) {
      // Rank-4 channels-last inputs: the axis moves with its dim ([N][C][H][W] axis a -> [N][H][W][C]), so
      // a DenseNet's or an Inception block's channel concatenation stays in the section.
      const int64_t axis = n.attrs.get_int("axis", 0), a = axis < 0 ? axis + 4 : axis;
      if (a >= 0 && a < 4) {
        n.attrs.set("axis", std::array<int64_t, 4>{0, 3, 1, 2}[size_t(a)]);
        out_last = true;
      }
    } else if ((n.op == "Relu" || n.op == "Clip" || n.op == "Sigmoid" || n.op == "Tanh" || n.op == "Gelu" ||
                n.op == "Erf") &&
               last(n.inputs[0])) {  // (Clip's bounds are scalars)
      out_last = true;
    } else if ((n.op == "Add" || n.op == "Sub" || n.op == "Mul" || n.op == "Div") && n.inputs.size() == 2 &&
               (last(n.inputs[0]) || last(n.inputs[1])) &&
               std::all_of(n.inputs.begin(), n.inputs.end(),
                           [&](ValueId v) { return last(v) || scalar(v) || as_last.count(v); })) {
      // Both rank-4 channels-last (broadcasting permutes alike) or one a scalar. An operand the section
      // already has a channels-last copy of (a MobileNet block's residual: the block's input, which its
      // first convolution read channels-last) is read from that copy.
      for (ValueId& v : n.inputs)
        if (!last(v) && !scalar(v)) v = as_last.at(v);
      out_last = true;
    }
    const bool stays_last = out_last || n.attrs.has(ops::kLayoutAttr);
    if (!stays_last)
      for (ValueId& v : n.inputs)
        if (last(v)) v = transposed(v, false);
    if (out_last)
      for (ValueId v : n.outputs)
        if (v != kNoValue) nhwc[size_t(v)] = true;
    nodes.push_back(std::move(n));
  }
  g.nodes = std::move(nodes);
  return moved;
}

// Conv (no activation of its own) -> Add(., r) -> Relu?, where nothing else reads the Conv's or the Add's
// output: the Conv node takes r as a second input and the Relu as an attribute (ConvLinearNode), and moves to
// the Add's (or Relu's) place, after r is made. A residual block's sum then costs no pass over memory with
// oneDNN's convolution (binary post-op), and one instead of two otherwise.
int fuse_residual(Graph& g) {
  Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int fused = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto* conv = dynamic_cast<const ConvLinearNode*>(g.nodes[i].state.get());
    if (!conv || dead[i] || g.nodes[i].inputs.size() != 1 || conv->layer->activation() != Activation::none)
      continue;
    const ValueId y = g.nodes[i].outputs[0];
    const int a = uses.sole_reader(y);
    if (a < 0 || g.nodes[size_t(a)].op != "Add" || g.nodes[size_t(a)].inputs.size() != 2) continue;
    const Node& add = g.nodes[size_t(a)];
    const ValueId r = add.inputs[0] == y ? add.inputs[1] : add.inputs[0];
    if (r == y || r == kNoValue || constant(g, r)) continue;
    int last = a;
    const int relu = uses.sole_reader(add.outputs[0]);
    if (relu >= 0 && g.nodes[size_t(relu)].op == "Relu") last = relu;
    Node moved = std::move(g.nodes[i]);
    moved.inputs.push_back(r);
    moved.outputs = g.nodes[size_t(last)].outputs;
    moved.attrs.set("sparse24_residual_relu", int64_t(last == relu));
    dead[i] = true;
    if (last != a) dead[size_t(a)] = true;
    g.nodes[size_t(last)] = std::move(moved);
    ++fused;
  }
  erase_marked(g, dead);
  return fused;
}

// Node i (a convolution taking in its sole reader, a pool) moves to the reader's place with the reader's
// outputs; the reader is dropped (marked dead where node i was).
void take_readers_place(Graph& g, size_t i, int reader, std::vector<bool>& dead) {
  Node moved = std::move(g.nodes[i]);
  moved.outputs = g.nodes[size_t(reader)].outputs;
  dead[i] = true;
  g.nodes[size_t(reader)] = std::move(moved);
}

// A channels-last depthwise Conv (to_channels_last) read only by a Relu, or by a Clip with constant bounds
// (MobileNetV2's ReLU6), takes it in (kDepthwiseReluAttr, kDepthwiseClipAttr) and its place: that
// activation then costs no pass of its own.
int fuse_depthwise_activation(Graph& g) {
  Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int fused = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& conv = g.nodes[i];
    if (conv.op != "Conv" || conv.state || !ops::channels_last(conv) || conv.outputs.size() != 1) continue;
    const int r = uses.sole_reader(conv.outputs[0]);
    if (r < 0) continue;
    const Node& act = g.nodes[size_t(r)];
    if (act.op == "Relu") {
      g.nodes[i].attrs.set(ops::kDepthwiseReluAttr, int64_t(1));
    } else if (const auto bounds = act.op == "Clip" ? constant_clip_bounds(g, act) : std::nullopt) {
      g.nodes[i].attrs.set(ops::kDepthwiseClipAttr, std::vector<float>{bounds->first, bounds->second});
    } else {
      continue;
    }
    take_readers_place(g, i, r, dead);
    ++fused;
  }
  erase_marked(g, dead);
  return fused;
}

// Conv (channels-last, no activation, ReLU or ReLU6) -> MaxPool whose window equals its strides, with no
// padding, dilation or Indices output, where nothing else reads the Conv's output: the Conv takes the pool as
// its sparse24_pool attribute and the MaxPool's place (ConvLinearNode::run_pooled), and the planner times
// each tactic with the pool. The direct kernel (short K: ops/conv_direct.h) then keeps each pool window in
// registers, and the full-size activation (the largest tensor of a CNN's stem) is never written or read
// back; a 2:4 patch kernel pools on its own threads once its output is complete.
int fuse_conv_pool(Graph& g) {
  Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int fused = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto* conv = dynamic_cast<const ConvLinearNode*>(g.nodes[i].state.get());
    const Activation act = conv ? conv->layer->activation() : Activation::none;
    if (!conv || g.nodes[i].inputs.size() != 1 || conv->weight_shape.size() != 4 ||
        (act != Activation::none && act != Activation::relu && act != Activation::relu6))
      continue;
    const int p = uses.sole_reader(g.nodes[i].outputs[0]);
    if (p < 0) continue;
    const Node& pool = g.nodes[size_t(p)];
    const std::vector<int64_t> kernel = pool.attrs.get_ints("kernel_shape");
    const std::vector<int64_t> pads = pool.attrs.get_ints("pads", {0, 0, 0, 0});
    const std::vector<int64_t> dilations = pool.attrs.get_ints("dilations", {1, 1});
    const std::string auto_pad = pool.attrs.get_string("auto_pad", "NOTSET");
    if (pool.op != "MaxPool" || !ops::channels_last(pool) || pool.outputs.size() != 1 || kernel.size() != 2 ||
        pool.attrs.get_ints("strides", {1, 1}) != kernel || pool.attrs.get_int("ceil_mode", 0) != 0 ||
        pads != std::vector<int64_t>{0, 0, 0, 0} || dilations != std::vector<int64_t>{1, 1} ||
        (auto_pad != "NOTSET" && auto_pad != "VALID"))
      continue;
    g.nodes[i].attrs.set(kPoolAttr, kernel);
    take_readers_place(g, i, p, dead);
    ++fused;
  }
  erase_marked(g, dead);
  return fused;
}

// A channels-last 2-D Conv whose output only a channels-last GlobalAveragePool reads: the Conv takes the
// pool's place and output (kGlobalPoolAttr), so the 2:4 kernel can sum the pool as it stores and the
// convolution's output is never written (ConvLinearNode::run_global_pooled).
int fuse_conv_global_pool(Graph& g) {
  Uses uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  int fused = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto* conv = dynamic_cast<const ConvLinearNode*>(g.nodes[i].state.get());
    if (!conv || conv->weight_shape.size() != 4 || !ops::channels_last(g.nodes[i]) ||
        g.nodes[i].attrs.has(kPoolAttr) || g.nodes[i].outputs.size() != 1)
      continue;
    const int p = uses.sole_reader(g.nodes[i].outputs[0]);
    if (p < 0) continue;
    const Node& pool = g.nodes[size_t(p)];
    if (pool.op != "GlobalAveragePool" || !ops::channels_last(pool) || pool.outputs.size() != 1) continue;
    g.nodes[i].attrs.set(kGlobalPoolAttr, int64_t(1));
    take_readers_place(g, i, p, dead);
    ++fused;
  }
  erase_marked(g, dead);
  return fused;
}

// Each channels-last depthwise Conv (to_channels_last, after fuse_depthwise_activation) becomes a
// DepthwiseConvNode holding its weight as [tap][C].
void lower_depthwise(Graph& g) {
  for (Node& n : g.nodes) {
    if (n.op != "Conv" || n.state || !ops::channels_last(n)) continue;
    const Tensor* w = constant(g, n.inputs[1]);
    std::optional<std::vector<float>> bias = w ? depthwise_bias(g, n, w->dim(0)) : std::nullopt;
    if (!bias) fail("node '{}' (Conv): channels-last without a constant weight and bias", n.name);
    n.state = DepthwiseConvNode::from_onnx(*w, std::move(*bias));
    n.inputs.resize(1);
  }
}

// Constants nothing reads any more (weights now held by linear layers, inputs of folded nodes) are dropped,
// so neither memory nor the plan file carries them twice.
void drop_unread_constants(Graph& g) {
  Uses uses(g);
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].constant && uses.readers[v].empty() && !uses.is_output[v]) g.values[v].constant.reset();
}

}  // namespace

OptimizeReport optimize(Graph& graph) {
  OptimizeReport rep;
  rep.folded_constants = fold_constants(graph);
  rep.folded_batchnorms = fold_batchnorm(graph);
  rep.lowered = lower_linear(graph) + lower_conv(graph);
  fuse_epilogues(graph, rep);
  rep.fused_attention = fuse_attention(graph);
  rep.fused_add_layer_norm = fuse_add_layer_norm(graph);
  rep.channels_last_convs = to_channels_last(graph);
  rep.fused_activations += fuse_depthwise_activation(graph);
  lower_depthwise(graph);
  rep.fused_residuals = fuse_residual(graph);
  rep.fused_pools = fuse_conv_pool(graph);
  rep.fused_global_pools = fuse_conv_global_pool(graph);
  drop_unread_constants(graph);
  return rep;
}

}  // namespace sparse24::engine
