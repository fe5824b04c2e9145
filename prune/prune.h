#pragma once
// Pruning a whole ONNX model to 2:4: pick the layers, compute each mask with a criterion, zero the rest in
// place. The output stays a standard ONNX model that any runtime runs.
#include <string>
#include <vector>

#include "graph/onnx_io.h"
#include "graph/weights.h"

namespace sparse24 {

/// What to prune and how.
struct PruneOptions {
  std::string method = "magnitude";  ///< mask criterion
  std::string include;               ///< regex: only layers whose node or weight name matches (empty: all)
  std::string exclude;               ///< regex: skip layers whose node or weight name matches (empty: none)
};

/// What happened to one weight-bearing node.
struct PruneRecord {
  WeightSite site;
  bool pruned = false;
  std::string note;                 ///< why it was left alone, when !pruned
  double fraction_before = 0;       ///< 2:4-conforming groups before
  double l1_kept = 1, l2_kept = 1;  ///< ||kept|| / ||all|| in L1 and L2 norm
};

/// The mask criteria available to --method.
std::vector<std::string> prune_methods();

/// Prunes every eligible, selected weight of `model` in place. Throws Error when nothing is left to prune,
/// on a bad regex or method, and on NaN/Inf in a weight (naming the tensor).
std::vector<PruneRecord> prune_model(OnnxModel& model, const PruneOptions& options);

}  // namespace sparse24
