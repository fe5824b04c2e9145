#include <algorithm>

#include "engine/ops/op.h"
#include "engine/ops/op_impl.h"

namespace sparse24::engine {

namespace {

constexpr OpInfo kOps[] = {
#define SPARSE24_OP(type, fn) {#type, ops::fn},
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
