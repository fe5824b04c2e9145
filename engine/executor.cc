#include "engine/executor.h"

#include <malloc.h>

#include <chrono>
#include <mutex>

#include "util/error.h"

namespace sparse24::engine {

namespace {

// Every op allocates its outputs, and glibc serves blocks above its mmap threshold (128 KiB to 32 MiB) with
// fresh mmaps: each large activation then costs page faults on every run (MiniLM at batch 8 spent half its
// time there). Raising the thresholds once keeps freed activations in the heap for the next run to reuse.
void keep_large_blocks_in_heap() {
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  });
}

}  // namespace

Executor::Executor(Graph graph) : graph_(std::move(graph)) {
  keep_large_blocks_in_heap();
  for (const Node& n : graph_.nodes) {
    if (n.state) {
      runs_.push_back(nullptr);
      continue;
    }
    const OpInfo* op = find_op(n.op);
    if (!op) fail("node '{}': op {} is not supported by the sparse24 engine", n.name, n.op);
    runs_.push_back(op->run);
  }
  last_use_.assign(graph_.values.size(), -1);
  for (size_t i = 0; i < graph_.nodes.size(); ++i)
    for (ValueId v : graph_.nodes[i].inputs)
      if (v != kNoValue) last_use_[size_t(v)] = int(i);
  for (ValueId v : graph_.outputs) last_use_[size_t(v)] = int(graph_.nodes.size());  // kept to the end
}

static void check_input(const Value& v, const Tensor& t) {
  if (v.declared_dtype && *v.declared_dtype != t.dtype())
    fail("input '{}': got {} data, the model declares {}", v.name, dtype_name(t.dtype()),
         dtype_name(*v.declared_dtype));
  if (v.declared_shape.empty()) return;
  bool ok = v.declared_shape.size() == t.shape().size();
  for (size_t i = 0; ok && i < v.declared_shape.size(); ++i)
    ok = v.declared_shape[i] < 0 || v.declared_shape[i] == t.shape()[i];
  if (!ok)
    fail("input '{}': got shape {}, the model declares {} (-1: any size)", v.name, shape_str(t.shape()),
         shape_str(v.declared_shape));
}

std::vector<Tensor> Executor::run(const std::map<std::string, Tensor>& inputs,
                                  const NodeObserver& observer) const {
  std::vector<Tensor> slots(graph_.values.size());
  std::vector<const Tensor*> ptr(graph_.values.size(), nullptr);
  for (size_t i = 0; i < graph_.values.size(); ++i)
    if (graph_.values[i].constant) ptr[i] = &*graph_.values[i].constant;
  for (const auto& [name, t] : inputs) {
    ValueId id = graph_.find(name);
    bool is_input = std::find(graph_.inputs.begin(), graph_.inputs.end(), id) != graph_.inputs.end();
    if (!is_input) {
      std::string names;
      for (ValueId in : graph_.inputs) names += (names.empty() ? "" : ", ") + graph_.values[size_t(in)].name;
      fail("'{}' is not an input of the model (its inputs: {})", name, names);
    }
    check_input(graph_.values[size_t(id)], t);
    ptr[size_t(id)] = &t;
  }
  for (ValueId id : graph_.inputs)
    if (!ptr[size_t(id)]) fail("input '{}' is missing", graph_.values[size_t(id)].name);

  std::vector<const Tensor*> in;
  std::vector<Tensor> out;
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    const Node& n = graph_.nodes[i];
    in.clear();
    for (ValueId v : n.inputs) in.push_back(v == kNoValue ? nullptr : ptr[size_t(v)]);
    out.assign(n.outputs.size(), Tensor());
    auto t0 = observer ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    if (n.state)
      n.state->run(n, in, out);
    else
      runs_[i](n, in, out);
    if (observer)
      observer(i, in, out,
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    for (size_t o = 0; o < n.outputs.size(); ++o) {
      ValueId v = n.outputs[o];
      if (v == kNoValue) continue;
      slots[size_t(v)] = std::move(out[o]);
      ptr[size_t(v)] = &slots[size_t(v)];
    }
    for (ValueId v : n.inputs)  // free intermediates after their last reader
      if (v != kNoValue && last_use_[size_t(v)] == int(i) && !graph_.values[size_t(v)].constant) {
        slots[size_t(v)] = Tensor();
        ptr[size_t(v)] = nullptr;
      }
  }
  std::vector<Tensor> result;
  for (ValueId v : graph_.outputs) result.push_back(*ptr[size_t(v)]);
  return result;
}

}  // namespace sparse24::engine
