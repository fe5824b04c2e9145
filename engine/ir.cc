#include "engine/ir.h"

#include <atomic>
#include <set>

#include "util/error.h"

namespace sparse24::engine {

template <typename T>
const T* Attributes::find(const std::string& name) const {
  auto it = attrs_.find(name);
  if (it == attrs_.end()) return nullptr;
  const T* v = std::get_if<T>(&it->second);
  if (!v) fail("attribute '{}' has an unexpected type", name);
  return v;
}

uint64_t Attributes::next_version() {
  static std::atomic<uint64_t> last{0};
  return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

int64_t Attributes::get_int(const std::string& name, int64_t dflt) const {
  const int64_t* v = find<int64_t>(name);
  return v ? *v : dflt;
}
float Attributes::get_float(const std::string& name, float dflt) const {
  const float* v = find<float>(name);
  return v ? *v : dflt;
}
std::string Attributes::get_string(const std::string& name, const std::string& dflt) const {
  const std::string* v = find<std::string>(name);
  return v ? *v : dflt;
}
std::vector<int64_t> Attributes::get_ints(const std::string& name, const std::vector<int64_t>& dflt) const {
  const auto* v = find<std::vector<int64_t>>(name);
  return v ? *v : dflt;
}
std::vector<float> Attributes::get_floats(const std::string& name, const std::vector<float>& dflt) const {
  const auto* v = find<std::vector<float>>(name);
  return v ? *v : dflt;
}
const Tensor* Attributes::get_tensor(const std::string& name) const {
  return find<Tensor>(name);
}

ValueId Graph::find(const std::string& name) const {
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i].name == name) return ValueId(i);
  return kNoValue;
}

ValueId Graph::add_value(std::string name) {
  std::string unique = name;
  for (int i = 1; find(unique) != kNoValue; ++i) unique = fmt::format("{}_{}", name, i);
  values.push_back(Value{unique, std::nullopt, std::nullopt, {}});
  return ValueId(values.size() - 1);
}

namespace {

Attributes::Attr convert_attribute(const onnx::AttributeProto& a, const std::string& node) {
  using A = onnx::AttributeProto;
  switch (a.type()) {
    case A::INT:
      return a.i();
    case A::FLOAT:
      return a.f();
    case A::STRING:
      return a.s();
    case A::INTS:
      return std::vector<int64_t>(a.ints().begin(), a.ints().end());
    case A::FLOATS:
      return std::vector<float>(a.floats().begin(), a.floats().end());
    case A::TENSOR:
      return read_tensor(a.t());
    default:
      fail("node '{}': attribute '{}' is a {} (graphs, sparse tensors and type protos are not supported)",
           node, a.name(), A::AttributeType_Name(a.type()));
  }
}

}  // namespace

Graph import_onnx(const OnnxModel& model) {
  const onnx::GraphProto& g = model.proto.graph();
  int opset = 0;
  for (const auto& o : model.proto.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = int(o.version());
  if (opset == 0) fail("'{}': the model imports no version of the default ONNX domain", model.path.string());

  Graph graph;
  std::map<std::string, ValueId> by_name;
  auto define = [&](const std::string& name) {
    ValueId id = ValueId(graph.values.size());
    graph.values.push_back(Value{name, std::nullopt, std::nullopt, {}});
    by_name[name] = id;
    return id;
  };
  for (const onnx::TensorProto& t : g.initializer()) {
    ValueId id = define(t.name());
    graph.values[size_t(id)].constant = read_tensor(t);
  }
  for (const onnx::ValueInfoProto& in : g.input()) {
    if (by_name.count(in.name())) continue;  // an initializer listed as input (older exporters): a constant
    ValueId id = define(in.name());
    Value& v = graph.values[size_t(id)];
    if (in.type().has_tensor_type()) {
      const auto& tt = in.type().tensor_type();
      v.declared_dtype = dtype_from_onnx(tt.elem_type());
      if (!v.declared_dtype)
        fail("'{}': input '{}' has element type {}, which the engine does not support", model.path.string(),
             in.name(), onnx_type_name(tt.elem_type()));
      for (const auto& d : tt.shape().dim())
        v.declared_shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
    graph.inputs.push_back(id);
  }

  std::set<std::string> node_names;
  for (int i = 0; i < g.node_size(); ++i) {
    const onnx::NodeProto& n = g.node(i);
    Node node;
    node.op = n.op_type();
    node.name =
        n.name().empty() || node_names.count(n.name()) ? fmt::format("{}#{}", n.op_type(), i) : n.name();
    node_names.insert(node.name);
    node.opset = opset;
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      fail("node '{}': op {} of domain '{}' is not supported", node.name, n.op_type(), n.domain());
    for (const std::string& in : n.input()) {
      if (in.empty()) {
        node.inputs.push_back(kNoValue);
        continue;
      }
      auto it = by_name.find(in);
      if (it == by_name.end())
        fail("node '{}' ({}): input '{}' is used before anything produces it", node.name, node.op, in);
      node.inputs.push_back(it->second);
    }
    for (const std::string& out : n.output()) node.outputs.push_back(out.empty() ? kNoValue : define(out));
    for (const auto& a : n.attribute()) node.attrs.set(a.name(), convert_attribute(a, node.name));
    graph.nodes.push_back(std::move(node));
  }
  for (const onnx::ValueInfoProto& out : g.output()) {
    auto it = by_name.find(out.name());
    if (it == by_name.end())
      fail("'{}': graph output '{}' is never produced", model.path.string(), out.name());
    if (out.type().has_tensor_type())
      graph.values[size_t(it->second)].declared_dtype = dtype_from_onnx(out.type().tensor_type().elem_type());
    graph.outputs.push_back(it->second);
  }
  return graph;
}

}  // namespace sparse24::engine
