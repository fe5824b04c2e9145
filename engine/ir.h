#pragma once
// The engine's in-memory graph: values (named tensors, some constant) and nodes in topological order,
// imported from ONNX. Shapes are dynamic: each op computes its output shapes when it runs.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "format/tensor.h"
#include "graph/onnx_io.h"

namespace sparse24::engine {

/// Index of a value in Graph::values; kNoValue marks an absent optional input.
using ValueId = int;
constexpr ValueId kNoValue = -1;

/// A node's attributes by name, with typed lookups that fail with the node's name in the message.
class Attributes {
 public:
  using Attr = std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>, Tensor>;
  void set(const std::string& name, Attr value) {
    attrs_[name] = std::move(value);
    version_ = next_version();
  }
  bool has(const std::string& name) const { return attrs_.count(name) != 0; }
  void erase(const std::string& name) {
    attrs_.erase(name);
    version_ = next_version();
  }
  /// Names these contents among all Attributes of the process: a change gives a new version, a copy keeps
  /// it. State that a node works out from its attributes once (ConvLinearNode's calls) is keyed by it.
  uint64_t version() const { return version_; }
  int64_t get_int(const std::string& name, int64_t dflt) const;
  float get_float(const std::string& name, float dflt) const;
  std::string get_string(const std::string& name, const std::string& dflt) const;
  std::vector<int64_t> get_ints(const std::string& name, const std::vector<int64_t>& dflt = {}) const;
  std::vector<float> get_floats(const std::string& name, const std::vector<float>& dflt = {}) const;
  /// The tensor attribute (Constant's value), or null.
  const Tensor* get_tensor(const std::string& name) const;
  const std::map<std::string, Attr>& all() const { return attrs_; }

 private:
  template <typename T>
  const T* find(const std::string& name) const;
  static uint64_t next_version();
  std::map<std::string, Attr> attrs_;
  uint64_t version_ = 0;  // 0: never set, so empty
};

/// State an engine-internal node carries (a prepared weight and its chosen kernel). A node with state runs
/// through it instead of the op table.
struct NodeState {
  virtual ~NodeState() = default;
  /// Runs the node: the same contract as an OpRun.
  virtual void run(const struct Node& node, std::span<const Tensor* const> inputs,
                   std::span<Tensor> outputs) const = 0;
};

/// One operation.
struct Node {
  std::string name;             ///< unique; "<op>#<index>" when the model gave none
  std::string op;               ///< ONNX op_type (or an engine-internal op such as "Linear")
  int opset = 17;               ///< version of the default ONNX domain the model imports
  std::vector<ValueId> inputs;  ///< kNoValue for an absent optional input
  std::vector<ValueId> outputs;
  Attributes attrs;
  std::shared_ptr<const NodeState> state;  ///< set for engine-internal nodes (see NodeState)
};

/// A named tensor flowing through the graph.
struct Value {
  std::string name;
  std::optional<Tensor> constant;       ///< initializers and folded values
  std::optional<DType> declared_dtype;  ///< graph inputs/outputs: the declared element type
  std::vector<int64_t> declared_shape;  ///< graph inputs: -1 for a symbolic dimension
};

/// The whole graph.
struct Graph {
  std::vector<Value> values;
  std::vector<Node> nodes;
  std::vector<ValueId> inputs;  ///< graph inputs that are not initializers
  std::vector<ValueId> outputs;
  ValueId find(const std::string& name) const;  ///< kNoValue when absent
  ValueId add_value(std::string name);          ///< a new value; the name is made unique if taken
};

/// Imports the main graph of an ONNX model. Throws Error for control-flow ops, non-default domains and
/// values used before they are produced (each named).
Graph import_onnx(const OnnxModel& model);

}  // namespace sparse24::engine
