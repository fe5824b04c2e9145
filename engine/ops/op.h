#pragma once
// One table of the ops the engine runs. Each op is a function that reads its input tensors and creates its
// outputs (dtype and shape decided by the op, so shapes stay dynamic). Ops report bad input (wrong rank,
// shapes that do not broadcast, unsupported dtype or attribute) as sparse24::Error naming the node.
#include <span>
#include <string_view>
#include <vector>

#include "engine/ir.h"

namespace sparse24::engine {

/// Runs one node. `inputs[i]` is null for an absent optional input; `outputs` has one slot per node output.
using OpRun = void (*)(const Node& node, std::span<const Tensor* const> inputs, std::span<Tensor> outputs);

/// An op the engine can run.
struct OpInfo {
  std::string_view op_type;
  OpRun run;
};

/// The op with this ONNX op_type, or null.
const OpInfo* find_op(std::string_view op_type);
/// Every op_type the engine runs, sorted.
std::vector<std::string_view> supported_ops();

}  // namespace sparse24::engine
