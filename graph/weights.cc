#include "graph/weights.h"

#include "graph/onnx_io.h"
#include "util/error.h"

namespace sparse24 {

namespace {

int64_t int_attr(const onnx::NodeProto& n, const std::string& name, int64_t dflt) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.i();
  return dflt;
}

void decide(WeightSite& s, const onnx::TensorProto* init) {
  if (!init) {
    s.reason = "weight not an initializer";
    return;
  }
  s.shape.assign(init->dims().begin(), init->dims().end());
  s.onnx_type = init->data_type();
  const auto& d = s.shape;
  if (s.op == "Gemm") {
    if (d.size() != 2) return void(s.reason = fmt::format("Gemm weight is {}-D, expected 2-D", d.size()));
    s.K = s.kind == WeightKind::gemm_kn ? d[0] : d[1];
    s.N = s.kind == WeightKind::gemm_kn ? d[1] : d[0];
    s.group_len = s.K;
  } else if (s.op == "MatMul") {
    if (d.empty()) return void(s.reason = "MatMul weight is a scalar");
    s.K = d.size() == 1 ? d[0] : d[d.size() - 2];
    s.N = d.size() == 1 ? 1 : d.back();
    for (size_t i = 0; i + 2 < d.size(); ++i) s.batch *= d[i];
    s.group_len = s.K;
  } else {  // Conv
    if (d.size() < 3)
      return void(s.reason = fmt::format("Conv weight is {}-D, expected at least 3-D", d.size()));
    s.N = d[0];
    s.group_len = d[1];
    s.K = d[1];
    for (size_t i = 2; i < d.size(); ++i) s.K *= d[i];
  }
  auto dt = dtype_from_onnx(s.onnx_type);
  if (!dt || (*dt != DType::f32 && *dt != DType::f16 && *dt != DType::bf16 && *dt != DType::i8)) {
    s.reason = fmt::format("element type {} not supported (f32, f16, bf16, i8)", onnx_type_name(s.onnx_type));
    return;
  }
  if (s.op == "Conv" && s.group_len < 4) {
    s.reason = fmt::format("IC/g < 4 (IC/g = {})", s.group_len);
    return;
  }
  if (s.group_len % 4 != 0) {
    s.reason = s.op == "Conv" ? fmt::format("K % 4 != 0 (IC/g = {})", s.group_len)
                              : fmt::format("K % 4 != 0 (K = {})", s.K);
    return;
  }
  s.eligible = true;
}

}  // namespace

std::vector<WeightSite> find_weight_sites(const onnx::GraphProto& graph) {
  std::vector<WeightSite> sites;
  for (int i = 0; i < graph.node_size(); ++i) {
    const onnx::NodeProto& n = graph.node(i);
    const std::string& op = n.op_type();
    if (!n.domain().empty() && n.domain() != "ai.onnx") continue;
    if (op != "Gemm" && op != "MatMul" && op != "Conv") continue;
    if (n.input_size() < 2) continue;
    WeightSite s;
    s.node = n.name().empty() ? fmt::format("{}#{}", op, i) : n.name();
    s.op = op;
    s.weight = n.input(1);
    s.kind = op == "Conv"               ? WeightKind::conv
             : op == "MatMul"           ? WeightKind::matmul_kn
             : int_attr(n, "transB", 0) ? WeightKind::gemm_nk
                                        : WeightKind::gemm_kn;
    decide(s, find_initializer(graph, s.weight));
    sites.push_back(std::move(s));
  }
  return sites;
}

namespace {

// Index of canonical element (r, k) in the ONNX weight, for each kind. Canonical rows are (batch, n).
struct IndexMap {
  const WeightSite& s;
  int64_t spatial = 1;  // Conv: product of kernel dims
  explicit IndexMap(const WeightSite& site) : s(site) {
    if (s.kind == WeightKind::conv)
      for (size_t i = 2; i < s.shape.size(); ++i) spatial *= s.shape[i];
  }
  int64_t operator()(int64_t r, int64_t k) const {
    switch (s.kind) {
      case WeightKind::gemm_nk:
        return r * s.K + k;
      case WeightKind::gemm_kn:
        return k * s.N + r;
      case WeightKind::matmul_kn: {
        int64_t b = r / s.N, n = r % s.N;
        return b * s.K * s.N + k * s.N + n;
      }
      case WeightKind::conv: {  // canonical k = pos * IC/g + c  <-  W[oc][c][pos]
        int64_t pos = k / s.group_len, c = k % s.group_len;
        return (r * s.group_len + c) * spatial + pos;
      }
    }
    return 0;
  }
};

}  // namespace

Tensor to_canonical(const Tensor& w, const WeightSite& s) {
  if (w.shape() != s.shape)
    fail("weight '{}': shape {} differs from the graph's {}", s.weight, shape_str(w.shape()),
         shape_str(s.shape));
  Tensor c(w.dtype(), {s.rows(), s.K});
  IndexMap map(s);
  size_t es = dtype_size(w.dtype());
  for (int64_t r = 0; r < s.rows(); ++r)
    for (int64_t k = 0; k < s.K; ++k)
      std::memcpy(c.bytes() + size_t(r * s.K + k) * es, w.bytes() + size_t(map(r, k)) * es, es);
  return c;
}

Tensor from_canonical(const Tensor& c, const WeightSite& s) {
  Tensor w(c.dtype(), s.shape);
  IndexMap map(s);
  size_t es = dtype_size(c.dtype());
  for (int64_t r = 0; r < s.rows(); ++r)
    for (int64_t k = 0; k < s.K; ++k)
      std::memcpy(w.bytes() + size_t(map(r, k)) * es, c.bytes() + size_t(r * s.K + k) * es, es);
  return w;
}

}  // namespace sparse24
