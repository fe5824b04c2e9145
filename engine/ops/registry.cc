#include <omp.h>

#include <algorithm>

#include "engine/ops/op.h"
#include "engine/ops/op_impl.h"

namespace sparse24::engine {

namespace {

// Every op runs with OpenMP's dynamic team sizing on for the calling thread, so that teams shrink when the
// machine is busy instead of spin-waiting for cores that other processes hold (MiniLM on 2 cores at load 6:
// 390 ms with fixed teams, 63-77 ms with dynamic ones; ops give the same results for any team size).
template <OpRun kRun>
void run_with_dynamic_teams(const Node& node, std::span<const Tensor* const> inputs,
                            std::span<Tensor> outputs) {
  thread_local bool configured = false;
  if (!configured) {
    omp_set_dynamic(1);
    configured = true;
  }
  kRun(node, inputs, outputs);
}

constexpr OpInfo kOps[] = {
#define SPARSE24_OP(type, fn) {#type, run_with_dynamic_teams<ops::fn>},
#include "engine/ops/ops.inc"
#undef SPARSE24_OP
};
}  // namespace

const OpInfo* find_op(std::string_view op_type) {
  for (const OpInfo& op : kOps)
    if (op.op_type == op_type) return &op;
  return nullptr;
}

std::vector<std::string_view> supported_ops() {
  std::vector<std::string_view> names;
  for (const OpInfo& op : kOps) names.push_back(op.op_type);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace sparse24::engine
