#pragma once
// Runs a Graph: feeds the inputs, runs the nodes in order, frees each intermediate tensor after its last
// use, and returns the graph outputs.
#include <map>
#include <string>
#include <vector>

#include "engine/ir.h"
#include "engine/ops/op.h"

namespace sparse24::engine {

/// A prepared graph, ready to run many times.
class Executor {
 public:
  /// Checks that every node's op is supported (Error names the first node that is not).
  explicit Executor(Graph graph);

  /// Runs the graph on named inputs; returns the outputs in graph order. Throws Error on a missing or
  /// unknown input name, a wrong dtype or a shape that contradicts the declared one.
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs) const;

  const Graph& graph() const { return graph_; }

 private:
  Graph graph_;
  std::vector<OpRun> runs_;        // per node
  std::vector<int> last_use_;      // per value: index of the last node reading it (-1: none)
};

}  // namespace sparse24::engine
