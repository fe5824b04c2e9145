// Gemm, MatMul and Conv through OpenBLAS (Conv as im2col + GEMM, see conv_gemm.h).
#include <cstring>

#include "engine/ops/conv_gemm.h"
#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "util/error.h"

namespace sparse24::engine::ops {

void run_gemm(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& a = required_input(node, in, 0);
  const Tensor& b = required_input(node, in, 1);
  const Tensor* c = optional_input(in, 2);
  require_dtype(node, a, {DType::f32}, "input A");
  require_dtype(node, b, {DType::f32}, "input B");
  if (a.rank() != 2 || b.rank() != 2)
    fail("node '{}' (Gemm): A {} and B {} must be 2-D", node.name, shape_str(a.shape()),
         shape_str(b.shape()));
  const bool ta = node.attrs.get_int("transA", 0) != 0, tb = node.attrs.get_int("transB", 0) != 0;
  const float alpha = node.attrs.get_float("alpha", 1.0f), beta = node.attrs.get_float("beta", 1.0f);
  const int64_t M = ta ? a.dim(1) : a.dim(0), K = ta ? a.dim(0) : a.dim(1);
  const int64_t KB = tb ? b.dim(1) : b.dim(0), N = tb ? b.dim(0) : b.dim(1);
  if (K != KB)
    fail("node '{}' (Gemm): A {} (transA={}) and B {} (transB={}) disagree on K ({} vs {})", node.name,
         shape_str(a.shape()), int(ta), shape_str(b.shape()), int(tb), K, KB);
  out[0] = Tensor(DType::f32, {M, N});
  float* y = out[0].data<float>();
  float gemm_beta = 0.0f;
  if (c && beta != 0.0f) {
    require_dtype(node, *c, {DType::f32}, "input C");
    const std::vector<int64_t> mn = {M, N};
    if (broadcast_shapes(node, {&c->shape(), &mn}) != mn)
      fail("node '{}' (Gemm): C {} does not broadcast to [{}, {}]", node.name, shape_str(c->shape()), M, N);
    // Y starts as C broadcast to [M][N]; BLAS then adds alpha · A · B onto beta · Y.
    Tensor cb = broadcast_to(*c, mn);
    if (cb.nbytes()) std::memcpy(y, cb.data<float>(), cb.nbytes());
    gemm_beta = beta;
  }
  blas_sgemm(ta, tb, M, N, K, alpha, a.data<float>(), a.dim(1), b.data<float>(), b.dim(1), gemm_beta, y, N);
}

void run_mat_mul(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& a = required_input(node, in, 0);
  const Tensor& b = required_input(node, in, 1);
  require_dtype(node, a, {DType::f32}, "input A");
  require_dtype(node, b, {DType::f32}, "input B");
  if (a.rank() == 0 || b.rank() == 0) fail("node '{}' (MatMul): scalar operands are not allowed", node.name);
  // 1-D operands become a row (A) or a column (B) matrix; that dim is dropped from the result again.
  std::vector<int64_t> as = a.shape(), bs = b.shape();
  if (a.rank() == 1) as.insert(as.begin(), 1);
  if (b.rank() == 1) bs.push_back(1);
  const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  if (bs[bs.size() - 2] != K)
    fail("node '{}' (MatMul): A {} and B {} disagree on K ({} vs {})", node.name, shape_str(a.shape()),
         shape_str(b.shape()), K, bs[bs.size() - 2]);
  const std::vector<int64_t> a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  const std::vector<int64_t> batch = broadcast_shapes(node, {&a_batch, &b_batch});
  std::vector<int64_t> shape = batch;
  if (a.rank() > 1) shape.push_back(M);
  if (b.rank() > 1) shape.push_back(N);
  out[0] = Tensor(DType::f32, shape);
  float* y = out[0].data<float>();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const int64_t batches = shape_numel(batch);
  if (batches == 0 || M == 0 || N == 0) return;
  if (shape_numel(b_batch) == 1) {  // one B for every batch: a single GEMM with the batches stacked along M
    blas_sgemm(false, false, batches * M, N, K, 1.0f, pa, K, pb, N, 0.0f, y, N);
    return;
  }
  BroadcastPlan<2> plan = plan_broadcast<2>(batch, {&a_batch, &b_batch});
  const int64_t inner = plan.inner();
  // Many small products (attention heads): one per thread; a few large ones split inside blas_sgemm.
  const bool per_thread = batches >= 2 * omp_get_max_threads() && 2 * M * N * K < (int64_t(1) << 24);
  parallel_for(batches, per_thread, [&](int64_t i) {
    auto off = plan.row_offsets(i / inner);
    const int64_t j = i % inner;
    const int64_t ia = off[0] + (plan.strides[0].empty() ? 0 : j * plan.strides[0][0]);
    const int64_t ib = off[1] + (plan.strides[1].empty() ? 0 : j * plan.strides[1][0]);
    blas_sgemm(false, false, M, N, K, 1.0f, pa + ia * M * K, K, pb + ib * K * N, N, 0.0f, y + i * M * N, N);
  });
}

void run_conv(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  const Tensor& w = required_input(node, in, 1);
  const Tensor* bias = optional_input(in, 2);
  require_dtype(node, x, {DType::f32}, "input X");
  require_dtype(node, w, {DType::f32}, "weight W");
  // A channels-last Conv runs only as a node the optimizer made (ConvLinearNode, DepthwiseConvNode).
  if (channels_last(node))
    fail("node '{}' (Conv): a channels-last Conv without its prepared weights", node.name);
  ConvShape shape = conv_shape(node, x.shape(), w.shape());
  if (bias) {
    require_dtype(node, *bias, {DType::f32}, "bias B");
    if (bias->rank() != 1 || bias->dim(0) != shape.out_channels)
      fail("node '{}' (Conv): bias B has shape {}, expected [{}]", node.name, shape_str(bias->shape()),
           shape.out_channels);
  }
  out[0] = Tensor(DType::f32, shape.output_shape());
  if (shape.in_channels == shape.groups) {
    conv_depthwise_direct(shape, x.data<float>(), w.data<float>(), bias ? bias->data<float>() : nullptr,
                          out[0].data<float>());
    return;
  }
  // The same conv-as-GEMM the planner runs with its 2:4 kernels, here with OpenBLAS on the canonical weight.
  const Tensor canonical = conv_weight_canonical(w);
  conv_as_gemm(shape, x.data<float>(), blas_conv_gemm(canonical.data<float>()),
               bias ? bias->data<float>() : nullptr, out[0].data<float>());
}

}  // namespace sparse24::engine::ops
