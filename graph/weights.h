#pragma once
// Where the weights sit in an ONNX graph and how each one is seen as the GEMM operand W[N][K] whose groups
// of 4 run along K (the reduction dimension):
//   Gemm  B [K][N] (transB=0) or [N][K] (transB=1)
//   MatMul with an initializer B [..][K][N] (each leading index is its own [N][K] matrix)
//   Conv  W [OC][IC/g][k...]: K = IC/g · prod(k), groups along IC at every (oc, kernel position)
// The canonical form is the 2-D tensor [rows][K] with rows = (batch ·) N, for Conv ordered
// [OC][kernel position][IC/g] so that the IC groups are contiguous (as ASP and TensorRT read them).
#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "format/tensor.h"

namespace sparse24 {

/// How a weight's ONNX shape maps to the canonical [rows][K].
enum class WeightKind : uint8_t { gemm_kn, gemm_nk, matmul_kn, conv };

/// One weight-bearing node of the graph.
struct WeightSite {
  std::string node;    ///< node name (or "<op>#<index>" when it has none)
  std::string op;      ///< Gemm, MatMul, Conv
  std::string weight;  ///< the weight input's name
  WeightKind kind = WeightKind::gemm_kn;
  std::vector<int64_t> shape;  ///< the weight's ONNX shape (empty when unknown)
  int32_t onnx_type = 0;       ///< element type (0 when unknown)
  int64_t N = 0, K = 0;        ///< GEMM shape: output features and reduction length
  int64_t batch = 1;           ///< independent [N][K] matrices (leading dims of a MatMul B)
  int64_t group_len = 0;       ///< length of the run the 2:4 groups live in (K, or IC/g for Conv)
  bool eligible = false;
  std::string reason;  ///< why not, when !eligible
  int64_t params() const { return batch * N * K; }
  int64_t rows() const { return batch * N; }
};

/// Every Gemm, MatMul and Conv of the main graph, in node order, with eligibility decided.
std::vector<WeightSite> find_weight_sites(const onnx::GraphProto& graph);

/// The weight in canonical form [rows][K].
Tensor to_canonical(const Tensor& onnx_weight, const WeightSite& site);
/// The canonical form back in the weight's ONNX shape (exact inverse of to_canonical).
Tensor from_canonical(const Tensor& canonical, const WeightSite& site);

}  // namespace sparse24
