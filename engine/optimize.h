#pragma once
// Graph rewrites done once when a model is loaded: fold constants, fold BatchNormalization into the Conv or
// Gemm before it, lower Gemm / MatMul / Conv with constant weights to linear layers, and fuse a following
// bias Add and Relu / Gelu (also GELU as PyTorch exports it: x·0.5·(1+erf(x/√2))) into their epilogue, and
// replace BERT's attention subgraph (head split, Q·Kᵀ, scale, mask, softmax, ·V, head merge) by one node
// and a residual Add feeding LayerNormalization by one node; run 2-D CNN sections channels-last, with a
// residual block's Add (and Relu) taken into its last convolution and a stem convolution's MaxPool into it.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/conv_onednn.h"
#include "engine/ir.h"
#include "engine/linear.h"
#include "engine/ops/conv_direct.h"
#include "engine/ops/conv_gemm.h"

namespace sparse24::engine {

/// What a node works out from its attributes and its input's shape (geometry, layout, fused epilogue), made
/// at the first run with those attributes (Attributes::version) and that shape, and kept. Worked out on every
/// run it cost about a microsecond per convolution: attribute maps, cache-cold after the layers before, and a
/// dozen small vectors (the bench CNN at batch 1, 2 threads: 1.1 us of its stem's 4.1 us in conv_shape).
template <class Call>
class CallCache {
 public:
  /// The Call for (node's attributes, x's shape), made by make() the first time.
  template <class Make>
  const Call& get(const Node& node, const Tensor& x, Make&& make) const {
    const auto same = [&](const std::unique_ptr<const Entry>& e) {
      return e->attrs_version == node.attrs.version() && e->x_shape == x.shape();
    };
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& e : entries_)
        if (same(e)) return e->call;
    }
    auto e = std::make_unique<const Entry>(Entry{node.attrs.version(), x.shape(), make()});
    // A model fed ever new input shapes keeps this many and works out the rest per run, on this thread.
    constexpr size_t kMaxCalls = 16;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& kept : entries_)
      if (same(kept)) return kept->call;  // another thread made it meanwhile
    if (entries_.size() >= kMaxCalls) {
      static thread_local std::unique_ptr<const Entry> uncached;
      uncached = std::move(e);
      return uncached->call;
    }
    entries_.push_back(std::move(e));
    return entries_.back()->call;
  }

 private:
  struct Entry {
    uint64_t attrs_version;
    std::vector<int64_t> x_shape;
    Call call;
  };
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<const Entry>> entries_;  // never shrinks: a reference stays valid
};

/// A node that runs a LinearLayer on X [.., K] -> Y [.., N].
struct LinearNode : NodeState {
  std::shared_ptr<LinearLayer> layer;
  std::string source_op;  ///< Gemm, MatMul or Conv
  void run(const Node& node, std::span<const Tensor* const> inputs, std::span<Tensor> outputs) const override;
};

/// A Conv (groups = 1, constant weight) whose GEMM is a LinearLayer on the canonical weight [OC][k·IC]:
/// im2col patches with input channels innermost, so 2:4 groups line up with the kernels'.
/// With the dense-onednn tactic it runs oneDNN's convolution primitive on the NCHW input instead.
/// An optional second input is a residual added after the convolution (then ReLU when the node's
/// sparse24_residual_relu attribute is 1): fuse_residual's Conv -> Add -> Relu.
/// With the sparse24_pool attribute [ph, pw] (fuse_conv_pool) a non-overlapping max pool follows, and the
/// node's output is the pooled tensor. With sparse24_global_pool = 1 (fuse_conv_global_pool) a
/// GlobalAveragePool follows: the output is [N][C][1][1].
struct ConvLinearNode : LinearNode {
  void run(const Node& node, std::span<const Tensor* const> inputs, std::span<Tensor> outputs) const override;
  /// True when the dense-direct tactic (ops/conv_direct.h) can run this node.
  bool supports_direct(const Node& node) const;
  /// The convolution's shape for input x (channels-last where the node says so).
  ops::ConvShape shape_for(const Node& node, const Tensor& x) const;
  std::vector<int64_t> weight_shape;  ///< the ONNX weight shape [OC][IC][k...]

 private:
  // What a run needs from the node's attributes and its input's shape (CallCache).
  struct Call {
    ops::ConvShape shape;
    std::vector<int64_t> out_shape;  ///< the convolution's output, channels-last where nhwc
    std::vector<int64_t> pool;       ///< the fused max pool's window (kPoolAttr); empty: none
    bool nhwc = false, global_pool = false, residual_relu = false;
  };
  const Call& call_for(const Node& node, const Tensor& x) const;
  // Returns true when it added `residual` itself (2:4 on patches read in place, without GELU).
  bool run_as_gemm(const Call& c, const Tensor& x, float* y, const float* residual = nullptr) const;
  void run_unpooled(const Node& node, std::span<const Tensor* const> inputs, const Call& c,
                    Tensor& out) const;
  void run_pooled(const Node& node, std::span<const Tensor* const> inputs, const Call& c, Tensor& out) const;
  void run_global_pooled(const Node& node, std::span<const Tensor* const> inputs, const Call& c,
                         Tensor& out) const;
  // The dense-direct tactic (ops::conv_direct_nhwc), its weights made at the first call; pool 1 x 1 for none.
  void run_direct(const Node& node, const Call& c, const Tensor& x, int64_t pool_h, int64_t pool_w,
                  float* y) const;
  const Node& pool_node(const Node& conv) const;
  CallCache<Call> calls_;
  mutable std::once_flag onednn_once_, direct_once_, pool_once_;
  mutable Node pool_node_;  // the GlobalAveragePool, made at the first call that runs it as a pass of its own
  mutable std::unique_ptr<OnednnConv> onednn_;  // made at the first dense-onednn run (after fusion)
  mutable std::unique_ptr<ops::DirectConvWeights> direct_;  // made at the first dense-direct run
};

/// A depthwise Conv (group = IC = OC, constant weight and bias) that runs channels-last (to_channels_last):
/// its weight held as [tap][C], so that a tap's weights load as vectors like an input pixel's channels, made
/// once (per run, that transposition took 10-12 us of a 7x7x960 MobileNetV2 convolution's 32, Zen 4, batch
/// 1, 2 threads). Its Relu or Clip is an attribute (kDepthwiseReluAttr, kDepthwiseClipAttr).
struct DepthwiseConvNode : NodeState {
  /// From the ONNX weight [C][1][k...] and the bias (empty: none).
  static std::shared_ptr<DepthwiseConvNode> from_onnx(const Tensor& weight, std::vector<float> bias);
  /// True when a weight of `shape` ([C][1][k...], every dim positive) holds `values` values and `biases`
  /// fits.
  static bool consistent(const std::vector<int64_t>& shape, size_t values, size_t biases);
  /// From the weight already by tap (a plan file's); Error where the sizes disagree (consistent).
  DepthwiseConvNode(std::vector<int64_t> weight_shape, std::vector<float> weight_by_tap,
                    std::vector<float> bias);
  void run(const Node& node, std::span<const Tensor* const> inputs, std::span<Tensor> outputs) const override;
  std::vector<int64_t> weight_shape;  ///< the ONNX weight shape [C][1][k...]
  std::vector<float> weight_by_tap;   ///< [tap][C]
  std::vector<float> bias;            ///< [C], or empty

 private:
  struct Call {
    ops::ConvShape shape;
    std::vector<int64_t> out_shape;  ///< channels-last
    ops::DepthwiseEpilogue epilogue;
  };
  CallCache<Call> calls_;
};

/// The attribute fuse_conv_pool puts on a Conv: its max pool's window [ph, pw] (= strides, no padding).
inline constexpr const char* kPoolAttr = "sparse24_pool";
/// The attribute fuse_conv_global_pool puts on a Conv whose output only a GlobalAveragePool read.
inline constexpr const char* kGlobalPoolAttr = "sparse24_global_pool";

/// What optimize() did, for reports and tests.
struct OptimizeReport {
  int folded_constants = 0, folded_batchnorms = 0, lowered = 0, fused_bias = 0, fused_activations = 0;
  int fused_attention = 0;       ///< attention subgraphs replaced by one FusedAttention node
  int fused_add_layer_norm = 0;  ///< Add -> LayerNormalization pairs replaced by AddLayerNormalization
  int channels_last_convs = 0;   ///< 2-D convolutions run on channels-last tensors
  int fused_residuals = 0;       ///< Conv -> Add -> (Relu) residual sums taken into the convolution
  int fused_pools = 0;           ///< Conv -> MaxPool pairs run as one node (a short-K convolution's pool)
  int fused_global_pools = 0;    ///< Conv -> GlobalAveragePool pairs run as one node
};

/// Rewrites the graph in place (see the file comment). The result computes the same outputs.
OptimizeReport optimize(Graph& graph);

/// The linear layer of a node, or null when the node is not one.
LinearLayer* linear_layer(const Node& node);

}  // namespace sparse24::engine
