#pragma once
// Training on the engine's graph, imported from the same ONNX file that is deployed: the forward runs every
// node in order and keeps each intermediate tensor; the backward runs each node's backward in reverse order.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/ir.h"
#include "train/ops.h"

namespace sparse24::train {

/// A graph prepared for training, in float (training) or double (gradient checks).
template <typename T>
class GraphTrainer {
 public:
  /// Checks every node: Error "op X (node 'Y') cannot be trained" for the first one training cannot run.
  /// The parameters are the float initializers read by trainable inputs (weights, biases, normalisation
  /// scales and shifts). With `input_gradients`, the graph inputs receive gradients too (for the checks).
  explicit GraphTrainer(engine::Graph graph, bool input_gradients = false);

  const engine::Graph& graph() const { return graph_; }
  /// Values that are trained, in the order the graph first reads them.
  const std::vector<engine::ValueId>& parameters() const { return parameters_; }
  /// BatchNormalization running means and variances (updated by update_running_statistics).
  const std::vector<engine::ValueId>& running_statistics() const { return running_stats_; }

  /// A value: a parameter, a constant or, after forward, an intermediate tensor.
  Buf<T>& value(engine::ValueId id) { return values_[size_t(id)]; }
  const Buf<T>& value(engine::ValueId id) const { return values_[size_t(id)]; }
  /// dLoss/dValue after backward (parameters and, when asked, the graph inputs).
  const Buf<T>& gradient(engine::ValueId id) const { return grads_[size_t(id)]; }
  Buf<T>& gradient(engine::ValueId id) { return grads_[size_t(id)]; }

  /// Runs the graph on its inputs (in graph order) and returns the first output.
  const Buf<T>& forward(std::span<const Buf<T>> inputs, const ForwardMode& mode);
  /// Back-propagates dLoss/dOutput (first output) through the last forward; previous gradients are replaced.
  void backward(const Buf<T>& doutput);
  /// After a training-mode forward: running = running · momentum + batch statistic · (1 − momentum).
  void update_running_statistics();

 private:
  struct RunningStats {
    size_t node;
    engine::ValueId mean, var;
    double momentum;
  };
  engine::Graph graph_;
  std::vector<const TrainOp<T>*> ops_;  // per node (null: a Constant, already a value)
  std::vector<Buf<T>> values_, grads_;
  std::vector<NodeCache<T>> caches_;  // per node
  std::vector<bool> needs_grad_;      // per value
  std::vector<engine::ValueId> parameters_, running_stats_;
  std::vector<RunningStats> bn_;
};

}  // namespace sparse24::train
