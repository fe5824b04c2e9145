#pragma once
// Graph rewrites done once when a model is loaded: fold constants, fold BatchNormalization into the Conv or
// Gemm before it, lower Gemm / MatMul / Conv with constant weights to linear layers, and fuse a following
// bias Add and Relu / Gelu (also GELU as PyTorch exports it: x·0.5·(1+erf(x/√2))) into their epilogue, and
// replace BERT's attention subgraph (head split, Q·Kᵀ, scale, mask, softmax, ·V, head merge) by one node
// and a residual Add feeding LayerNormalization by one node; run 2-D CNN sections channels-last, with a
// residual block's Add (and Relu) taken into its last convolution and a stem convolution's MaxPool into it.
#include <mutex>
#include <string>
#include <vector>

#include "engine/conv_onednn.h"
#include "engine/ir.h"
#include "engine/linear.h"
#include "engine/ops/conv_direct.h"
#include "engine/ops/conv_gemm.h"

namespace sparse24::engine {

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
  // What a run needs from the node's attributes and its input's shape, worked out at the first run with
  // those attributes (Attributes::version) and that shape, and kept. Parsed on every run, they cost about
  // a microsecond per convolution: attribute maps, cache-cold after the layers before, and a dozen small
  // vectors (the bench CNN at batch 1, 2 threads: 1.1 us of its stem's 4.1 us in conv_shape).
  struct Call {
    uint64_t attrs_version = 0;
    std::vector<int64_t> x_shape;
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
  mutable std::mutex calls_mutex_;
  mutable std::vector<std::unique_ptr<const Call>> calls_;  // never shrinks: a reference stays valid
  mutable std::once_flag onednn_once_, direct_once_, pool_once_;
  mutable Node pool_node_;  // the GlobalAveragePool, made at the first call that runs it as a pass of its own
  mutable std::unique_ptr<OnednnConv> onednn_;  // made at the first dense-onednn run (after fusion)
  mutable std::unique_ptr<ops::DirectConvWeights> direct_;  // made at the first dense-direct run
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
