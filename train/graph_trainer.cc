#include "train/graph_trainer.h"

#include <algorithm>

#include "util/error.h"

namespace sparse24::train {

using engine::kNoValue;
using engine::Node;
using engine::ValueId;

template <typename T>
GraphTrainer<T>::GraphTrainer(engine::Graph graph, bool input_gradients) : graph_(std::move(graph)) {
  const size_t nvalues = graph_.values.size();
  values_.resize(nvalues);
  grads_.resize(nvalues);
  needs_grad_.assign(nvalues, false);
  caches_.resize(graph_.nodes.size());
  for (size_t v = 0; v < nvalues; ++v)
    if (graph_.values[v].constant) values_[v] = buf_from_tensor<T>(*graph_.values[v].constant);
  if (input_gradients)
    for (ValueId id : graph_.inputs) needs_grad_[size_t(id)] = true;
  if (graph_.outputs.empty()) fail("the model has no output to train");

  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    Node& node = graph_.nodes[i];
    if (node.op == "Constant" && node.outputs.size() == 1 && node.attrs.get_tensor("value")) {
      // A constant node is a value like an initializer (never trained).
      Tensor t = *node.attrs.get_tensor("value");
      values_[size_t(node.outputs[0])] = buf_from_tensor<T>(t);
      graph_.values[size_t(node.outputs[0])].constant = std::move(t);
      ops_.push_back(nullptr);
      continue;
    }
    const TrainOp<T>* op = find_train_op<T>(node.op);
    if (!op) cannot_train(node, "");
    ops_.push_back(op);
    for (size_t k = 0; k < node.inputs.size() && k < 32; ++k) {
      const ValueId in = node.inputs[k];
      if (in == kNoValue) continue;
      const engine::Value& v = graph_.values[size_t(in)];
      if ((op->parameters >> k & 1) && v.constant && v.constant->dtype() == DType::f32 &&
          std::find(parameters_.begin(), parameters_.end(), in) == parameters_.end()) {
        parameters_.push_back(in);
        needs_grad_[size_t(in)] = true;
      }
    }
    if (node.op == "BatchNormalization" && node.inputs.size() >= 5) {
      const ValueId mean = node.inputs[3], var = node.inputs[4];
      if (mean != kNoValue && var != kNoValue && graph_.values[size_t(mean)].constant &&
          graph_.values[size_t(var)].constant) {
        bn_.push_back({i, mean, var, node.attrs.get_float("momentum", 0.9f)});
        running_stats_.push_back(mean);
        running_stats_.push_back(var);
      }
    }
    bool flows = false;
    for (size_t k = 0; k < node.inputs.size() && k < 32; ++k)
      flows |=
          node.inputs[k] != kNoValue && (op->differentiable >> k & 1) && needs_grad_[size_t(node.inputs[k])];
    if (flows) {
      if (!op->backward) cannot_train(node, "it has no backward");
      for (ValueId out : node.outputs)
        if (out != kNoValue) needs_grad_[size_t(out)] = true;
    }
  }
}

template <typename T>
const Buf<T>& GraphTrainer<T>::forward(std::span<const Buf<T>> inputs, const ForwardMode& mode) {
  if (inputs.size() != graph_.inputs.size())
    fail("the model has {} inputs, {} were given", graph_.inputs.size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) values_[size_t(graph_.inputs[i])] = inputs[i];
  std::vector<const Buf<T>*> in;
  std::vector<const Tensor*> constants;
  std::vector<Buf<T>> out;
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    if (!ops_[i]) continue;
    const Node& node = graph_.nodes[i];
    in.clear();
    constants.clear();
    for (ValueId id : node.inputs) {
      in.push_back(id == kNoValue ? nullptr : &values_[size_t(id)]);
      constants.push_back(id == kNoValue || !graph_.values[size_t(id)].constant
                              ? nullptr
                              : &*graph_.values[size_t(id)].constant);
    }
    out.assign(node.outputs.size(), Buf<T>());
    ForwardMode m = mode;
    m.node_index = i;
    ops_[i]->forward(node, OpInputs<T>{in, constants}, out, caches_[i], m);
    for (size_t k = 0; k < node.outputs.size(); ++k)
      if (node.outputs[k] != kNoValue) values_[size_t(node.outputs[k])] = std::move(out[k]);
  }
  return values_[size_t(graph_.outputs[0])];
}

template <typename T>
void GraphTrainer<T>::backward(const Buf<T>& doutput) {
  const ValueId logits = graph_.outputs[0];
  if (doutput.shape != values_[size_t(logits)].shape)
    fail("output gradient {} does not match the output {}", shape_str(doutput.shape),
         shape_str(values_[size_t(logits)].shape));
  for (size_t v = 0; v < grads_.size(); ++v) grads_[v] = needs_grad_[v] ? Buf<T>(values_[v].shape) : Buf<T>();
  if (!needs_grad_[size_t(logits)]) return;  // nothing trainable feeds the output
  grads_[size_t(logits)] = doutput;
  std::vector<const Buf<T>*> in, dout, outs;
  std::vector<const Tensor*> constants;
  std::vector<Buf<T>*> din;
  for (size_t i = graph_.nodes.size(); i-- > 0;) {
    if (!ops_[i]) continue;
    const Node& node = graph_.nodes[i];
    bool any = false;
    dout.clear();
    for (ValueId id : node.outputs) {
      const bool has = id != kNoValue && needs_grad_[size_t(id)];
      dout.push_back(has ? &grads_[size_t(id)] : nullptr);
      any |= has;
    }
    if (!any) continue;
    in.clear();
    constants.clear();
    din.clear();
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const ValueId id = node.inputs[k];
      in.push_back(id == kNoValue ? nullptr : &values_[size_t(id)]);
      constants.push_back(id == kNoValue || !graph_.values[size_t(id)].constant
                              ? nullptr
                              : &*graph_.values[size_t(id)].constant);
      const bool wanted =
          id != kNoValue && k < 32 && (ops_[i]->differentiable >> k & 1) && needs_grad_[size_t(id)];
      din.push_back(wanted ? &grads_[size_t(id)] : nullptr);
    }
    outs.clear();
    for (ValueId id : node.outputs) outs.push_back(id == kNoValue ? nullptr : &values_[size_t(id)]);
    ops_[i]->backward(node, OpInputs<T>{in, constants}, outs, dout, din, caches_[i]);
  }
}

template <typename T>
void GraphTrainer<T>::update_running_statistics() {
  for (const RunningStats& s : bn_) {
    const NodeCache<T>& cache = caches_[s.node];
    if (!cache.training) continue;
    Buf<T>& mean = values_[size_t(s.mean)];
    Buf<T>& var = values_[size_t(s.var)];
    const size_t channels = mean.data.size();
    for (size_t c = 0; c < channels; ++c) {
      mean.data[c] = T(double(mean.data[c]) * s.momentum + double(cache.stats[c]) * (1.0 - s.momentum));
      var.data[c] =
          T(double(var.data[c]) * s.momentum + double(cache.stats[channels + c]) * (1.0 - s.momentum));
    }
  }
}

template class GraphTrainer<float>;
template class GraphTrainer<double>;

}  // namespace sparse24::train
