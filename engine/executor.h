#pragma once
// Runs a Graph: feeds the inputs, runs the nodes in order, frees each intermediate tensor after its last
// use, and returns the graph outputs.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/ir.h"
#include "engine/ops/op.h"

namespace sparse24::engine {

/// Called after each node runs (for profiling and for recording shapes): node index, its inputs and
/// outputs, and the milliseconds it took.
using NodeObserver = std::function<void(size_t node, std::span<const Tensor* const> inputs,
                                        std::span<const Tensor> outputs, double ms)>;

/// A prepared graph, ready to run many times.
class Executor {
 public:
  /// Checks that every node's op is supported (Error names the first node that is not).
  explicit Executor(Graph graph);

  /// Runs the graph on named inputs; returns the outputs in graph order. Throws Error on a missing or
  /// unknown input name, a wrong dtype or a shape that contradicts the declared one.
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs,
                          const NodeObserver& observer = {}) const;

  const Graph& graph() const { return graph_; }

 private:
  Graph graph_;
  std::vector<OpRun> runs_;    // per node
  std::vector<int> last_use_;  // per value: index of the last node reading it (-1: none)
};

}  // namespace sparse24::engine
