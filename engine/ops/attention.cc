// FusedAttention: the engine-internal op that replaces BERT's attention subgraph (optimize.cc builds it):
//   ctx = softmax(Q·Kᵀ · scale + mask) · V, per batch and head,
// with Q [B][S][H·D], K and V [B][T][H·D] exactly as the projections write them, and ctx [B][S][H·D] as the
// output projection reads it. The head split and merge (Reshape + Transpose) become leading dimensions of
// the per-head GEMMs, so no transposed copy is made, and the scores of one head stay in cache from the
// first GEMM through the softmax to the second.
#include <array>
#include <vector>

#include "engine/ops/conv_gemm.h"
#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "util/error.h"

namespace sparse24::engine::ops {
namespace {

// Element strides of an additive mask over [B][H][S][T]: 0 along a dimension it broadcasts.
std::array<int64_t, 4> mask_strides(const Node& node, const Tensor& mask,
                                    const std::array<int64_t, 4>& dims) {
  if (mask.rank() > 4)
    fail("node '{}' (FusedAttention): mask {} has more than 4 dimensions", node.name,
         shape_str(mask.shape()));
  std::array<int64_t, 4> strides{};
  int64_t stride = 1;
  for (int i = 3, m = mask.rank() - 1; i >= 0; --i, --m) {
    const int64_t d = m >= 0 ? mask.dim(m) : 1;
    if (d != 1 && d != dims[size_t(i)])
      fail("node '{}' (FusedAttention): mask {} does not broadcast to [{}, {}, {}, {}]", node.name,
           shape_str(mask.shape()), dims[0], dims[1], dims[2], dims[3]);
    strides[size_t(i)] = d == 1 ? 0 : stride;
    stride *= d;
  }
  return strides;
}

}  // namespace

void run_fused_attention(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  // Either Q, K, V as three tensors, or one [B][S][3·H·D] tensor holding them side by side (inputs 1 and 2
  // absent) as a merged projection writes it.
  const Tensor& q = required_input(node, in, 0);
  const bool packed = in.size() < 3 || (!in[1] && !in[2]);
  const Tensor& k = packed ? q : required_input(node, in, 1);
  const Tensor& v = packed ? q : required_input(node, in, 2);
  const Tensor* mask = optional_input(in, 3);
  for (const Tensor* t : {&q, &k, &v}) require_dtype(node, *t, {DType::f32}, "Q, K and V");
  const int64_t H = node.attrs.get_int("heads", 0);
  const float scale = node.attrs.get_float("scale", 1.0f);
  const int64_t parts = packed ? 3 : 1;
  if (q.rank() != 3 || k.rank() != 3 || v.shape() != k.shape() || q.dim(0) != k.dim(0) ||
      q.dim(2) != k.dim(2) || H <= 0 || q.dim(2) % (H * parts) != 0)
    fail(
        "node '{}' (FusedAttention): Q {}, K {}, V {} are not [B, S, H*D], [B, T, H*D] twice ({}) with H = "
        "{}",
        node.name, shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()),
        packed ? "packed as one" : "three tensors", H);
  // E: the model width; ld: elements between rows of Q, K and V.
  const int64_t B = q.dim(0), S = q.dim(1), T = k.dim(1), E = q.dim(2) / parts, D = E / H, ld = q.dim(2);
  std::array<int64_t, 4> ms{};
  if (mask) {
    require_dtype(node, *mask, {DType::f32}, "mask");
    ms = mask_strides(node, *mask, {B, H, S, T});
  }
  out[0] = Tensor::uninitialized(DType::f32, {B, S, E});
  if (B * S * E == 0) return;
  const float* pq = q.data<float>();
  const float* pk = k.data<float>() + (packed ? E : 0);
  const float* pv = v.data<float>() + (packed ? 2 * E : 0);
  const float* pm = mask ? mask->data<float>() : nullptr;
  float* py = out[0].data<float>();
#pragma omp parallel
  {
    std::vector<float> scores(size_t(S * T));
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const int64_t q0 = b * S * ld + h * D, kv0 = b * T * ld + h * D, y0 = b * S * E + h * D;
      // Inside the parallel region blas_sgemm runs on this thread alone.
      blas_sgemm(false, true, S, T, D, scale, pq + q0, ld, pk + kv0, ld, 0.0f, scores.data(), T);
      for (int64_t i = 0; i < S; ++i)
        attention_softmax_row_f32(scores.data() + i * T,
                                  pm ? pm + b * ms[0] + h * ms[1] + i * ms[2] : nullptr, ms[3], T);
      blas_sgemm(false, false, S, D, T, 1.0f, scores.data(), T, pv + kv0, ld, 0.0f, py + y0, E);
    }
  }
}

}  // namespace sparse24::engine::ops
