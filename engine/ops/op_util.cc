#include "engine/ops/op_util.h"

#include <cstring>
#include <limits>

#include "util/error.h"

namespace sparse24::engine::ops {

void require_dtype(const Node& node, const Tensor& t, std::initializer_list<DType> allowed,
                   const char* what) {
  for (DType d : allowed)
    if (t.dtype() == d) return;
  std::string names;
  for (DType d : allowed) names += (names.empty() ? "" : ", ") + std::string(dtype_name(d));
  fail("node '{}' ({}): {} is {}, expected one of {}", node.name, node.op, what, dtype_name(t.dtype()),
       names);
}

const Tensor& required_input(const Node& node, std::span<const Tensor* const> in, size_t i) {
  if (i >= in.size() || !in[i]) fail("node '{}' ({}): input {} is missing", node.name, node.op, i);
  return *in[i];
}

const Tensor* optional_input(std::span<const Tensor* const> in, size_t i) {
  return i < in.size() ? in[i] : nullptr;
}

int normalize_axis(const Node& node, int64_t axis, int rank) {
  if (axis < -rank || axis >= rank)
    fail("node '{}' ({}): axis {} is out of range for rank {}", node.name, node.op, axis, rank);
  return int(axis < 0 ? axis + rank : axis);
}

std::vector<int64_t> read_int_list(const Node& node, const Tensor& t, const char* what) {
  std::vector<int64_t> v(size_t(t.numel()));
  if (t.dtype() == DType::i64) {
    if (!v.empty()) std::memcpy(v.data(), t.data<int64_t>(), v.size() * sizeof(int64_t));
  } else if (t.dtype() == DType::i32) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<int32_t>()[i];
  } else {
    fail("node '{}' ({}): {} is {}, expected i64 or i32", node.name, node.op, what, dtype_name(t.dtype()));
  }
  return v;
}

int64_t dims_product(const std::vector<int64_t>& shape, int begin, int end) {
  int64_t p = 1;
  for (int i = begin; i < end; ++i) p *= shape[size_t(i)];
  return p;
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int i = int(shape.size()) - 2; i >= 0; --i) s[size_t(i)] = s[size_t(i) + 1] * shape[size_t(i) + 1];
  return s;
}

std::vector<int64_t> broadcast_shapes(const Node& node,
                                      std::initializer_list<const std::vector<int64_t>*> shapes) {
  size_t rank = 0;
  for (const auto* s : shapes) rank = std::max(rank, s->size());
  std::vector<int64_t> out(rank, 1);
  for (const auto* s : shapes) {
    size_t off = rank - s->size();
    for (size_t i = 0; i < s->size(); ++i) {
      int64_t d = (*s)[i];
      int64_t& o = out[off + i];
      if (d == o || d == 1) continue;
      if (o == 1) {
        o = d;
        continue;
      }
      std::string all;
      for (const auto* t : shapes) all += (all.empty() ? "" : " and ") + shape_str(*t);
      fail("node '{}' ({}): shapes {} do not broadcast", node.name, node.op, all);
    }
  }
  return out;
}

template <size_t N>
int64_t BroadcastPlan<N>::outer() const {
  int64_t p = 1;
  for (size_t i = 1; i < dims.size(); ++i) p *= dims[i];
  return p;
}

template <size_t N>
std::array<int64_t, N> BroadcastPlan<N>::row_offsets(int64_t row) const {
  std::array<int64_t, N> off{};
  for (size_t d = 1; d < dims.size() && row > 0; ++d) {
    int64_t idx = row % dims[d];
    row /= dims[d];
    for (size_t k = 0; k < N; ++k) off[k] += idx * strides[k][d];
  }
  return off;
}

template <size_t N>
BroadcastPlan<N> plan_broadcast(const std::vector<int64_t>& out_shape,
                                const std::array<const std::vector<int64_t>*, N>& inputs) {
  const int rank = int(out_shape.size());
  // Per output dim (innermost first), each input's stride; output dims of size 1 carry nothing and go.
  std::array<std::vector<int64_t>, N> full;
  for (size_t k = 0; k < N; ++k) {
    const auto& s = *inputs[k];
    full[k].assign(size_t(rank), 0);
    int64_t stride = 1;
    for (int i = int(s.size()) - 1; i >= 0; --i) {
      int o = rank - int(s.size()) + i;
      if (s[size_t(i)] != 1) full[k][size_t(o)] = stride;
      stride *= s[size_t(i)];
    }
  }
  BroadcastPlan<N> plan;
  for (int o = rank - 1; o >= 0; --o) {
    int64_t d = out_shape[size_t(o)];
    if (d == 1) continue;
    if (!plan.dims.empty()) {
      bool merge = true;
      for (size_t k = 0; k < N && merge; ++k) {
        int64_t cur = plan.strides[k].back(), next = full[k][size_t(o)];
        merge = (cur == 0 && next == 0) || (cur != 0 && next == cur * plan.dims.back());
      }
      if (merge) {
        plan.dims.back() *= d;
        continue;
      }
    }
    plan.dims.push_back(d);
    for (size_t k = 0; k < N; ++k) plan.strides[k].push_back(full[k][size_t(o)]);
  }
  return plan;
}

template struct BroadcastPlan<1>;
template struct BroadcastPlan<2>;
template struct BroadcastPlan<3>;
template BroadcastPlan<1> plan_broadcast<1>(const std::vector<int64_t>&,
                                            const std::array<const std::vector<int64_t>*, 1>&);
template BroadcastPlan<2> plan_broadcast<2>(const std::vector<int64_t>&,
                                            const std::array<const std::vector<int64_t>*, 2>&);
template BroadcastPlan<3> plan_broadcast<3>(const std::vector<int64_t>&,
                                            const std::array<const std::vector<int64_t>*, 3>&);

namespace {
template <typename T>
void broadcast_copy(const BroadcastPlan<1>& plan, const T* src, T* dst) {
  const int64_t inner = plan.inner(), outer = plan.outer();
  const int64_t s = plan.strides[0].empty() ? 0 : plan.strides[0][0];
  parallel_for(outer, outer * inner >= kParallelMinElements, [&](int64_t r) {
    const T* a = src + plan.row_offsets(r)[0];
    T* y = dst + r * inner;
    if (s == 1)
      std::memcpy(y, a, size_t(inner) * sizeof(T));
    else
      for (int64_t i = 0; i < inner; ++i) y[i] = a[i * s];
  });
}
}  // namespace

Tensor broadcast_to(const Tensor& src, const std::vector<int64_t>& out_shape) {
  Tensor out(src.dtype(), out_shape);
  if (out.numel() == 0) return out;
  BroadcastPlan<1> plan = plan_broadcast<1>(out_shape, {&src.shape()});
  switch (dtype_size(src.dtype())) {
    case 1:
      broadcast_copy(plan, src.data<uint8_t>(), out.data<uint8_t>());
      break;
    case 2:
      broadcast_copy(plan, reinterpret_cast<const uint16_t*>(src.bytes()),
                     reinterpret_cast<uint16_t*>(out.bytes()));
      break;
    case 4:
      broadcast_copy(plan, reinterpret_cast<const uint32_t*>(src.bytes()),
                     reinterpret_cast<uint32_t*>(out.bytes()));
      break;
    default:
      broadcast_copy(plan, reinterpret_cast<const uint64_t*>(src.bytes()),
                     reinterpret_cast<uint64_t*>(out.bytes()));
      break;
  }
  return out;
}

}  // namespace sparse24::engine::ops

namespace sparse24::engine::ops {

WindowGeometry window_geometry(const Node& node, const std::vector<int64_t>& in,
                               const std::vector<int64_t>& kernel, bool allow_ceil) {
  const size_t n = in.size();
  WindowGeometry g;
  g.in = in;
  g.kernel = kernel;
  g.strides = node.attrs.get_ints("strides", std::vector<int64_t>(n, 1));
  g.dilations = node.attrs.get_ints("dilations", std::vector<int64_t>(n, 1));
  if (g.strides.size() != n || g.dilations.size() != n || kernel.size() != n)
    fail("node '{}' ({}): kernel_shape, strides and dilations need {} values (one per spatial dim)",
         node.name, node.op, n);
  for (size_t i = 0; i < n; ++i)
    if (g.strides[i] < 1 || g.dilations[i] < 1 || kernel[i] < 1)
      fail("node '{}' ({}): kernel sizes, strides and dilations must be >= 1", node.name, node.op);
  const std::string auto_pad = node.attrs.get_string("auto_pad", "NOTSET");
  const bool ceil_mode = allow_ceil && node.attrs.get_int("ceil_mode", 0) != 0;
  g.pads_begin.assign(n, 0);
  g.pads_end.assign(n, 0);
  g.out.assign(n, 0);
  if (auto_pad == "NOTSET") {
    std::vector<int64_t> pads = node.attrs.get_ints("pads", std::vector<int64_t>(2 * n, 0));
    if (pads.size() != 2 * n) fail("node '{}' ({}): pads needs {} values", node.name, node.op, 2 * n);
    for (size_t i = 0; i < n; ++i) {
      g.pads_begin[i] = pads[i];
      g.pads_end[i] = pads[n + i];
      if (pads[i] < 0 || pads[n + i] < 0) fail("node '{}' ({}): negative pads", node.name, node.op);
    }
  } else if (auto_pad != "VALID" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER") {
    fail("node '{}' ({}): auto_pad '{}' is not supported", node.name, node.op, auto_pad);
  }
  for (size_t i = 0; i < n; ++i) {
    const int64_t extent = (kernel[i] - 1) * g.dilations[i] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      g.out[i] = (in[i] + g.strides[i] - 1) / g.strides[i];
      const int64_t total = std::max<int64_t>(0, (g.out[i] - 1) * g.strides[i] + extent - in[i]);
      g.pads_begin[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.pads_end[i] = total - g.pads_begin[i];
      continue;
    }
    const int64_t span = in[i] + g.pads_begin[i] + g.pads_end[i] - extent;
    if (span < 0)
      fail("node '{}' ({}): the window (extent {}) is larger than the padded input ({}) in spatial dim {}",
           node.name, node.op, extent, in[i] + g.pads_begin[i] + g.pads_end[i], i);
    g.out[i] = (ceil_mode ? (span + g.strides[i] - 1) / g.strides[i] : span / g.strides[i]) + 1;
    // In ceil mode the last window must still start inside the input or its leading padding.
    if (ceil_mode && (g.out[i] - 1) * g.strides[i] >= in[i] + g.pads_begin[i]) --g.out[i];
  }
  return g;
}

Window3 to_window3(const WindowGeometry& g) {
  Window3 w;
  const int lead = 3 - g.rank();
  for (int i = 0; i < 3; ++i) {
    const bool real = i >= lead;
    const size_t j = size_t(real ? i - lead : 0), o = size_t(i);
    w.in[o] = real ? g.in[j] : 1;
    w.k[o] = real ? g.kernel[j] : 1;
    w.s[o] = real ? g.strides[j] : 1;
    w.d[o] = real ? g.dilations[j] : 1;
    w.pb[o] = real ? g.pads_begin[j] : 0;
    w.pe[o] = real ? g.pads_end[j] : 0;
    w.out[o] = real ? g.out[j] : 1;
  }
  return w;
}

std::pair<float, float> clip_attribute_bounds(const Node& node) {
  const float inf = std::numeric_limits<float>::infinity();
  if (node.opset >= 11) return {-inf, inf};
  return {node.attrs.get_float("min", -inf), node.attrs.get_float("max", inf)};
}

bool channels_last(const Node& node) {
  return node.attrs.get_string(kLayoutAttr, "") == "NHWC";
}

std::vector<int64_t> channels_first_shape(const std::vector<int64_t>& nhwc) {
  if (nhwc.size() < 3) return nhwc;
  std::vector<int64_t> s = {nhwc[0], nhwc.back()};
  s.insert(s.end(), nhwc.begin() + 1, nhwc.end() - 1);
  return s;
}

std::vector<int64_t> channels_last_shape(const std::vector<int64_t>& nchw) {
  if (nchw.size() < 3) return nchw;
  std::vector<int64_t> s = {nchw[0]};
  s.insert(s.end(), nchw.begin() + 2, nchw.end());
  s.push_back(nchw[1]);
  return s;
}

}  // namespace sparse24::engine::ops
