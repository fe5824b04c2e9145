// Normalisations and the mean reduction.
#include <cmath>

#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "util/error.h"

namespace sparse24::engine::ops {

namespace {

// Y[n][c][...] = (X - mean[c]) / sqrt(var[c] + eps) * scale[c] + bias[c].
void batchnorm_apply(const Tensor& x, const float* scale, const float* bias, const double* mean,
                     const double* var, double epsilon, Tensor& y) {
  const int64_t batch = x.dim(0), channels = x.dim(1), spatial = dims_product(x.shape(), 2, x.rank());
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  parallel_for(batch * channels, x.numel() >= kParallelMinElements, [&](int64_t nc) {
    const int64_t c = nc % channels;
    const float mul = float(double(scale[c]) / std::sqrt(var[c] + epsilon));
    const float add = float(double(bias[c]) - mean[c] * double(mul));
    const float* s = src + nc * spatial;
    float* d = dst + nc * spatial;
    for (int64_t i = 0; i < spatial; ++i) d[i] = s[i] * mul + add;
  });
}

}  // namespace

void run_batch_normalization(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  require_dtype(node, x, {DType::f32}, "input X");
  if (x.rank() < 2)
    fail("node '{}' (BatchNormalization): input X has rank {}, expected >= 2", node.name, x.rank());
  const int64_t channels = x.dim(1);
  const char* names[] = {"X", "scale", "B", "input_mean", "input_var"};
  std::vector<const float*> params;
  for (size_t i = 1; i < 5; ++i) {
    const Tensor& p = required_input(node, in, i);
    require_dtype(node, p, {DType::f32}, names[i]);
    if (p.rank() != 1 || p.dim(0) != channels)
      fail("node '{}' (BatchNormalization): {} has shape {}, expected [{}]", node.name, names[i],
           shape_str(p.shape()), channels);
    params.push_back(p.data<float>());
  }
  const double epsilon = node.attrs.get_float("epsilon", 1e-5f);
  const bool training = node.opset >= 14 && node.attrs.get_int("training_mode", 0) != 0;
  if (!training && out.size() > 1)
    fail("node '{}' (BatchNormalization): {} outputs in inference mode (only Y is defined)", node.name,
         out.size());
  std::vector<double> mean(static_cast<size_t>(channels)), var(static_cast<size_t>(channels));
  if (training) {
    // Statistics of this batch normalise Y; the running statistics are blended with them (ONNX opset 14+).
    const int64_t batch = x.dim(0), spatial = dims_product(x.shape(), 2, x.rank());
    const double count = double(batch * spatial);
    const float* src = x.data<float>();
    for (int64_t c = 0; c < channels; ++c) {
      double sum = 0, sq = 0;
      for (int64_t n = 0; n < batch; ++n)
        for (int64_t i = 0; i < spatial; ++i) sum += src[(n * channels + c) * spatial + i];
      const double m = sum / count;
      for (int64_t n = 0; n < batch; ++n)
        for (int64_t i = 0; i < spatial; ++i) {
          double d = src[(n * channels + c) * spatial + i] - m;
          sq += d * d;
        }
      mean[size_t(c)] = m;
      var[size_t(c)] = sq / count;
    }
    const double momentum = node.attrs.get_float("momentum", 0.9f);
    for (size_t o = 1; o < out.size() && o < 3; ++o) {
      const float* running = params[o + 1];  // input_mean for output 1, input_var for output 2
      const std::vector<double>& current = o == 1 ? mean : var;
      out[o] = Tensor(DType::f32, {channels});
      for (int64_t c = 0; c < channels; ++c)
        out[o].data<float>()[c] = float(running[c] * momentum + current[size_t(c)] * (1.0 - momentum));
    }
    if (out.size() > 3)
      fail("node '{}' (BatchNormalization): {} outputs; at most 3 are defined from opset 14", node.name,
           out.size());
  } else {
    for (int64_t c = 0; c < channels; ++c) {
      mean[size_t(c)] = params[2][c];
      var[size_t(c)] = params[3][c];
    }
  }
  out[0] = Tensor(DType::f32, x.shape());
  batchnorm_apply(x, params[0], params[1], mean.data(), var.data(), epsilon, out[0]);
}

namespace {

// LayerNormalization of x, or of x + residual when residual (same shape as x) is given: each row's sum is
// formed in the output row and normalised there, so the sum never makes a trip through memory.
void layer_norm(const Node& node, const Tensor& x, const Tensor* residual, const Tensor& scale_in,
                const Tensor* bias_in, std::span<Tensor> out) {
  require_dtype(node, x, {DType::f32}, "input X");
  require_dtype(node, scale_in, {DType::f32}, "Scale");
  if (bias_in) require_dtype(node, *bias_in, {DType::f32}, "B");
  const int rank = x.rank();
  const int axis = normalize_axis(node, node.attrs.get_int("axis", -1), rank);
  const double epsilon = node.attrs.get_float("epsilon", 1e-5f);
  const std::vector<int64_t> norm_shape(x.shape().begin() + axis, x.shape().end());
  const int64_t rows = dims_product(x.shape(), 0, axis), n = shape_numel(norm_shape);
  // Scale and B broadcast (unidirectionally) onto the normalised dims.
  auto expand = [&](const Tensor& p, const char* what) {
    if (p.shape() == norm_shape) return p;
    if (broadcast_shapes(node, {&p.shape(), &norm_shape}) != norm_shape)
      fail("node '{}' (LayerNormalization): {} has shape {}, which does not broadcast to {}", node.name, what,
           shape_str(p.shape()), shape_str(norm_shape));
    return broadcast_to(p, norm_shape);
  };
  const Tensor scale = expand(scale_in, "Scale");
  const Tensor bias = bias_in ? expand(*bias_in, "B") : Tensor();
  const float* pb = bias_in ? bias.data<float>() : nullptr;
  const float* ps = scale.data<float>();

  std::vector<int64_t> stat_shape = x.shape();
  for (int i = axis; i < rank; ++i) stat_shape[size_t(i)] = 1;
  out[0] = Tensor::uninitialized(DType::f32, x.shape());
  float* mean_out = nullptr;
  float* inv_std_out = nullptr;
  if (out.size() > 1) mean_out = (out[1] = Tensor(DType::f32, stat_shape)).data<float>();
  if (out.size() > 2) inv_std_out = (out[2] = Tensor(DType::f32, stat_shape)).data<float>();
  const float* src = x.data<float>();
  float* dst = out[0].data<float>();
  const float* res = residual ? residual->data<float>() : nullptr;
  parallel_for(rows, x.numel() >= kParallelMinElements && rows > 1, [&](int64_t r) {
    float mean, inv_std;
    const float* row = src + r * n;
    if (res) {
      float* sum = dst + r * n;
      for (int64_t i = 0; i < n; ++i) sum[i] = row[i] + res[r * n + i];
      row = sum;  // layer_norm_row_f32 reads each element before it writes it: in place is fine
    }
    layer_norm_row_f32(row, ps, pb, dst + r * n, n, epsilon, &mean, &inv_std);
    if (mean_out) mean_out[r] = mean;
    if (inv_std_out) inv_std_out[r] = inv_std;
  });
}

}  // namespace

void run_layer_normalization(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  layer_norm(node, required_input(node, in, 0), nullptr, required_input(node, in, 1), optional_input(in, 2),
             out);
}

// Engine-internal (optimize.cc): Add(A, R) -> LayerNormalization as one op, inputs A, R, Scale, B.
void run_add_layer_normalization(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& a = required_input(node, in, 0);
  const Tensor& r = required_input(node, in, 1);
  const Tensor& scale = required_input(node, in, 2);
  const Tensor* bias = optional_input(in, 3);
  if (a.shape() == r.shape() && r.dtype() == DType::f32) return layer_norm(node, a, &r, scale, bias, out);
  // Operands that broadcast: the plain Add first.
  Tensor sum;
  const Tensor* add_in[] = {&a, &r};
  run_add(node, add_in, std::span<Tensor>(&sum, 1));
  layer_norm(node, sum, nullptr, scale, bias, out);
}

void run_reduce_mean(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = required_input(node, in, 0);
  require_dtype(node, x, {DType::f32}, "input");
  const int rank = x.rank();
  std::vector<int64_t> axes;
  bool noop_with_empty_axes = false;
  if (node.opset >= 18) {
    if (const Tensor* a = optional_input(in, 1)) axes = read_int_list(node, *a, "axes");
    noop_with_empty_axes = node.attrs.get_int("noop_with_empty_axes", 0) != 0;
  } else {
    axes = node.attrs.get_ints("axes");
  }
  const bool keepdims = node.attrs.get_int("keepdims", 1) != 0;
  if (axes.empty() && noop_with_empty_axes) {
    out[0] = x;
    return;
  }
  std::vector<bool> reduced(size_t(rank), axes.empty());
  for (int64_t a : axes) reduced[size_t(normalize_axis(node, a, rank))] = true;
  std::vector<int64_t> kept_shape = x.shape(), out_shape;
  int64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    if (reduced[size_t(i)]) {
      count *= x.shape()[size_t(i)];
      kept_shape[size_t(i)] = 1;
      if (keepdims) out_shape.push_back(1);
    } else {
      out_shape.push_back(x.shape()[size_t(i)]);
    }
  }
  out[0] = Tensor(DType::f32, out_shape);
  const int64_t out_n = out[0].numel();
  float* dst = out[0].data<float>();
  const float* src = x.data<float>();
  if (count == 0) {
    for (int64_t i = 0; i < out_n; ++i) dst[i] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  int first_reduced = rank;
  while (first_reduced > 0 && reduced[size_t(first_reduced - 1)]) --first_reduced;
  bool trailing_only = true;
  for (int i = 0; i < first_reduced; ++i) trailing_only &= !reduced[size_t(i)];
  if (trailing_only) {  // the common case (last axis): one contiguous row per output element
    parallel_for(out_n, x.numel() >= kParallelMinElements && out_n > 1, [&](int64_t r) {
      double sum = 0;
      for (int64_t i = 0; i < count; ++i) sum += src[r * count + i];
      dst[r] = float(sum / double(count));
    });
    return;
  }
  // General case: walk the input once, accumulating into the output element each row maps to.
  std::vector<double> acc(size_t(out_n), 0.0);
  BroadcastPlan<2> plan = plan_broadcast<2>(x.shape(), {&x.shape(), &kept_shape});
  const int64_t inner = plan.inner(), outer = plan.outer();
  const bool inner_reduced = plan.strides[1].empty() || plan.strides[1][0] == 0;
  for (int64_t r = 0; r < outer; ++r) {
    auto off = plan.row_offsets(r);
    const float* s = src + off[0];
    double* a = acc.data() + off[1];
    if (inner_reduced) {
      double sum = 0;
      for (int64_t i = 0; i < inner; ++i) sum += s[i];
      *a += sum;
    } else {
      for (int64_t i = 0; i < inner; ++i) a[i] += s[i];
    }
  }
  for (int64_t i = 0; i < out_n; ++i) dst[i] = float(acc[size_t(i)] / double(count));
}

}  // namespace sparse24::engine::ops
