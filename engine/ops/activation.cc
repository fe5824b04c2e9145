// Element-wise activations.
#include <cmath>

#include "engine/ops/op_impl.h"
#include "util/error.h"

namespace sparse24::engine::ops {

void run_relu(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& x = *in[0];
  if (x.dtype() != DType::f32) fail("node '{}' (Relu): input is {}, expected f32", node.name, dtype_name(x.dtype()));
  out[0] = Tensor(DType::f32, x.shape());
  const float* src = x.data<float>();
  float* dst = out[0].data<float>();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) dst[i] = src[i] > 0.0f ? src[i] : 0.0f;
}

}  // namespace sparse24::engine::ops
