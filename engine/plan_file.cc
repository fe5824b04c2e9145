#include "engine/plan_file.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "util/atomic_file.h"
#include "util/error.h"

namespace sparse24::engine {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'S', '2', '4', 'P', 'L', 'A', 'N', '\0'};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

class Writer {
 public:
  template <typename T>
  void pod(const T& v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void bytes(const void* p, size_t n) {
    pod<uint64_t>(n);
    out_.append(static_cast<const char*>(p), n);
  }
  void str(const std::string& s) { bytes(s.data(), s.size()); }
  void ints(const std::vector<int64_t>& v) { bytes(v.data(), v.size() * 8); }
  void ids(const std::vector<ValueId>& v) { bytes(v.data(), v.size() * sizeof(ValueId)); }
  void floats(const std::vector<float>& v) { bytes(v.data(), v.size() * 4); }
  void tensor(const Tensor& t) {
    pod<uint8_t>(uint8_t(t.dtype()));
    ints(t.shape());
    bytes(t.bytes(), t.nbytes());
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  Reader(const std::string& data, const fs::path& path) : data_(data), path_(path) {}
  template <typename T>
  T pod() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string str() {
    uint64_t n = pod<uint64_t>();
    need(n);
    std::string s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <typename T>
  std::vector<T> vec() {
    std::string s = str();
    if (s.size() % sizeof(T)) corrupt();
    std::vector<T> v(s.size() / sizeof(T));
    std::memcpy(v.data(), s.data(), s.size());
    return v;
  }
  Tensor tensor() {
    uint8_t dt = pod<uint8_t>();
    if (dt > uint8_t(DType::boolean)) corrupt();
    std::vector<int64_t> shape = vec<int64_t>();
    for (int64_t d : shape)
      if (d < 0 || d > (int64_t(1) << 40)) corrupt();
    std::string b = str();
    if (b.size() != size_t(shape_numel(shape)) * dtype_size(DType(dt))) corrupt();
    Tensor t(DType(dt), shape);
    std::memcpy(t.bytes(), b.data(), b.size());
    return t;
  }
  ValueId id(size_t values) {
    ValueId v = pod<ValueId>();
    if (v != kNoValue && (v < 0 || size_t(v) >= values)) corrupt();
    return v;
  }
  bool done() const { return pos_ == data_.size(); }
  [[noreturn]] void corrupt() const {
    fail("plan '{}' is corrupted (inconsistent contents)", path_.string());
  }

 private:
  void need(uint64_t n) const {
    if (n > data_.size() - pos_) corrupt();
  }
  const std::string& data_;
  const fs::path& path_;
  size_t pos_ = 0;
};

enum class AttrKind : uint8_t { i, f, s, ints, floats, tensor };

void write_attrs(Writer& w, const Attributes& a) {
  w.pod<uint32_t>(uint32_t(a.all().size()));
  for (const auto& [name, v] : a.all()) {
    w.str(name);
    w.pod<uint8_t>(uint8_t(v.index()));
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, float>)
            w.pod(x);
          else if constexpr (std::is_same_v<T, std::string>)
            w.str(x);
          else if constexpr (std::is_same_v<T, std::vector<int64_t>>)
            w.ints(x);
          else if constexpr (std::is_same_v<T, std::vector<float>>)
            w.floats(x);
          else
            w.tensor(x);
        },
        v);
  }
}

Attributes read_attrs(Reader& r) {
  Attributes a;
  uint32_t n = r.pod<uint32_t>();
  for (uint32_t i = 0; i < n; ++i) {
    std::string name = r.str();
    switch (AttrKind(r.pod<uint8_t>())) {
      case AttrKind::i:
        a.set(name, r.pod<int64_t>());
        break;
      case AttrKind::f:
        a.set(name, r.pod<float>());
        break;
      case AttrKind::s:
        a.set(name, r.str());
        break;
      case AttrKind::ints:
        a.set(name, r.vec<int64_t>());
        break;
      case AttrKind::floats:
        a.set(name, r.vec<float>());
        break;
      case AttrKind::tensor:
        a.set(name, r.tensor());
        break;
      default:
        r.corrupt();
    }
  }
  return a;
}

// What state a node carries, the byte before it.
enum : uint8_t { kNoState = 0, kLinearState = 1, kDepthwiseState = 2 };

// A channels-last depthwise convolution: its ONNX weight shape, weight by tap and bias.
void write_depthwise(Writer& w, const DepthwiseConvNode& dw) {
  w.ints(dw.weight_shape);
  w.floats(dw.weight_by_tap);
  w.floats(dw.bias);
}

std::shared_ptr<DepthwiseConvNode> read_depthwise(Reader& r) {
  std::vector<int64_t> shape = r.vec<int64_t>();
  std::vector<float> by_tap = r.vec<float>(), bias = r.vec<float>();
  if (!DepthwiseConvNode::consistent(shape, by_tap.size(), bias.size())) r.corrupt();
  return std::make_shared<DepthwiseConvNode>(std::move(shape), std::move(by_tap), std::move(bias));
}

// A linear layer: its tactic, epilogue, and weight — compressed when the tactic is 2:4.
void write_linear(Writer& w, const LinearNode& ln) {
  const LinearLayer& l = *ln.layer;
  auto* conv = dynamic_cast<const ConvLinearNode*>(&ln);
  w.pod<uint8_t>(conv != nullptr);
  if (conv) w.ints(conv->weight_shape);
  w.str(ln.source_op);
  w.pod<uint8_t>(uint8_t(l.tactic()));
  w.pod<uint8_t>(uint8_t(l.activation()));
  w.floats(l.bias());
  if (l.tactic() == Tactic::sparse24_cpu) {
    Sparse24 s = compress_24(l.weight());
    w.pod<int64_t>(s.rows);
    w.pod<int64_t>(s.cols);
    w.bytes(s.values.data(), s.values.size());
    w.bytes(s.meta.data(), s.meta.size());
    // The kernel the planner chose for its M (empty: the dispatcher's).
    w.str(l.sparse_kernel() ? l.sparse_kernel()->name : "");
    w.pod<int64_t>(l.sparse_kernel_m());
  } else {
    w.tensor(l.weight());
  }
}

std::shared_ptr<LinearNode> read_linear(Reader& r) {
  std::shared_ptr<LinearNode> ln;
  if (r.pod<uint8_t>()) {
    auto conv = std::make_shared<ConvLinearNode>();
    conv->weight_shape = r.vec<int64_t>();
    ln = conv;
  } else {
    ln = std::make_shared<LinearNode>();
  }
  ln->source_op = r.str();
  uint8_t tactic = r.pod<uint8_t>(), act = r.pod<uint8_t>();
  if (tactic > uint8_t(Tactic::dense_direct) || act > uint8_t(Activation::relu6)) r.corrupt();
  if (is_cuda(Tactic(tactic)))
    if (std::string why = cuda_unavailable_reason(); !why.empty())
      fail("this plan runs layers on the GPU (built with --device cuda), but {}", why);
  std::vector<float> bias = r.vec<float>();
  Tensor weight;
  std::string kernel_name;
  int64_t kernel_m = 0;
  if (Tactic(tactic) == Tactic::sparse24_cpu) {
    Sparse24 s;
    s.rows = r.pod<int64_t>();
    s.cols = r.pod<int64_t>();
    std::string values = r.str(), meta = r.str();
    if (s.rows < 0 || s.cols % 4 || values.size() != size_t(s.rows * s.cols / 2) * 4 ||
        meta.size() != size_t((s.rows * s.cols / 4 + 1) / 2))
      r.corrupt();
    s.values.resize(values.size());
    std::memcpy(s.values.data(), values.data(), values.size());
    s.meta.assign(meta.begin(), meta.end());
    for (int64_t g = 0; g < s.rows * s.cols / 4; ++g)
      if (!is_legal_nibble(s.nibble(g / (s.cols / 4), g % (s.cols / 4)))) r.corrupt();
    weight = decompress_24(s);
    kernel_name = r.str();
    kernel_m = r.pod<int64_t>();
    if (kernel_m < 0 || (kernel_name.empty() != (kernel_m == 0))) r.corrupt();
  } else {
    weight = r.tensor();
  }
  if (weight.rank() != 2 || (!bias.empty() && int64_t(bias.size()) != weight.dim(0))) r.corrupt();
  ln->layer = std::make_shared<LinearLayer>(std::move(weight), std::move(bias), Activation(act));
  ln->layer->set_tactic(Tactic(tactic));
  if (!kernel_name.empty()) {
    const cpu::Spmm24Kernel* kernel = nullptr;
    for (const cpu::Spmm24Kernel& k : cpu::spmm24_kernels())
      if (kernel_name == k.name) kernel = &k;
    if (!kernel)
      fail("this plan names a 2:4 kernel this sparse24 does not have ({}): rebuild the plan", kernel_name);
    ln->layer->set_sparse_kernel(kernel, kernel_m);
  }
  return ln;
}

}  // namespace

void save_plan(const CompiledModel& m, const fs::path& path) {
  Writer w;
  w.str(std::string(cpu::isa_name(m.isa)));
  w.pod<uint8_t>(uint8_t(m.sparsity));
  w.pod(m.batch);
  w.pod(m.seq);
  const Graph& g = m.graph;
  w.pod<uint64_t>(g.values.size());
  for (const Value& v : g.values) {
    w.str(v.name);
    w.pod<uint8_t>(v.constant.has_value());
    if (v.constant) w.tensor(*v.constant);
    w.pod<uint8_t>(v.declared_dtype.has_value());
    if (v.declared_dtype) w.pod<uint8_t>(uint8_t(*v.declared_dtype));
    w.ints(v.declared_shape);
  }
  w.ids(g.inputs);
  w.ids(g.outputs);
  w.pod<uint64_t>(g.nodes.size());
  for (const Node& n : g.nodes) {
    w.str(n.name);
    w.str(n.op);
    w.pod<int32_t>(n.opset);
    w.ids(n.inputs);
    w.ids(n.outputs);
    write_attrs(w, n.attrs);
    if (auto* ln = dynamic_cast<const LinearNode*>(n.state.get())) {
      w.pod<uint8_t>(kLinearState);
      write_linear(w, *ln);
    } else if (auto* dw = dynamic_cast<const DepthwiseConvNode*>(n.state.get())) {
      w.pod<uint8_t>(kDepthwiseState);
      write_depthwise(w, *dw);
    } else {
      w.pod<uint8_t>(kNoState);
    }
  }
  w.pod<uint64_t>(m.layers.size());
  for (const LayerPlan& p : m.layers) {
    w.str(p.node);
    w.str(p.source_op);
    for (int64_t v : {p.M, p.N, p.K}) w.pod(v);
    w.pod<uint8_t>(p.is_24);
    w.pod<uint8_t>(uint8_t(p.tactic));
    w.pod<uint8_t>(uint8_t(p.dense_tactic));
    w.pod(p.dense_ms);
    w.pod(p.sparse_ms);
    w.str(p.sparse_kernel);
  }
  std::string payload = w.take();
  write_file_atomically(path, [&](std::ostream& os) {
    os.write(kMagic, 8);
    uint32_t version = kPlanVersion, zero = 0;
    uint64_t size = payload.size(), sum = fnv1a(payload);
    os.write(reinterpret_cast<const char*>(&version), 4);
    os.write(reinterpret_cast<const char*>(&zero), 4);
    os.write(reinterpret_cast<const char*>(&size), 8);
    os.write(reinterpret_cast<const char*>(&sum), 8);
    os.write(payload.data(), std::streamsize(payload.size()));
  });
}

bool is_plan_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  return in.read(magic, 8) && std::memcmp(magic, kMagic, 8) == 0;
}

CompiledModel load_plan(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("'{}': no such file or not readable", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string file = ss.str();
  if (file.size() < 32 || std::memcmp(file.data(), kMagic, 8) != 0)
    fail("'{}' is not a sparse24 plan", path.string());
  uint32_t version;
  uint64_t size, sum;
  std::memcpy(&version, file.data() + 8, 4);
  std::memcpy(&size, file.data() + 16, 8);
  std::memcpy(&sum, file.data() + 24, 8);
  if (version != kPlanVersion)
    fail("plan '{}' has format version {}, this sparse24 reads version {}: rebuild it", path.string(),
         version, kPlanVersion);
  if (file.size() - 32 != size)
    fail("plan '{}' is truncated or has trailing bytes ({} payload bytes, header says {})", path.string(),
         file.size() - 32, size);
  const std::string payload = file.substr(32);
  if (fnv1a(payload) != sum) fail("plan '{}' is corrupted: checksum mismatch", path.string());

  Reader r(payload, path);
  CompiledModel m;
  std::string isa = r.str();
  try {
    m.isa = cpu::parse_isa(isa);
  } catch (const Error&) {
    r.corrupt();
  }
  cpu::Isa here = cpu::active_isa();
  if (m.isa > here)
    fail("plan '{}' was built for ISA {}, but this run can only use {}: rebuild the plan on this machine",
         path.string(), isa, cpu::isa_name(here));
  uint8_t sparsity = r.pod<uint8_t>();
  if (sparsity > uint8_t(SparsityMode::force)) r.corrupt();
  m.sparsity = SparsityMode(sparsity);
  m.batch = r.pod<int64_t>();
  m.seq = r.pod<int64_t>();
  Graph& g = m.graph;
  uint64_t nvalues = r.pod<uint64_t>();
  if (nvalues > payload.size()) r.corrupt();
  for (uint64_t i = 0; i < nvalues; ++i) {
    Value v{r.str(), std::nullopt, std::nullopt, {}};
    if (r.pod<uint8_t>()) v.constant = r.tensor();
    if (r.pod<uint8_t>()) {
      uint8_t dt = r.pod<uint8_t>();
      if (dt > uint8_t(DType::boolean)) r.corrupt();
      v.declared_dtype = DType(dt);
    }
    v.declared_shape = r.vec<int64_t>();
    g.values.push_back(std::move(v));
  }
  auto ids = [&] {
    std::vector<ValueId> v = r.vec<ValueId>();
    for (ValueId id : v)
      if (id != kNoValue && (id < 0 || size_t(id) >= g.values.size())) r.corrupt();
    return v;
  };
  g.inputs = ids();
  g.outputs = ids();
  uint64_t nnodes = r.pod<uint64_t>();
  if (nnodes > payload.size()) r.corrupt();
  for (uint64_t i = 0; i < nnodes; ++i) {
    Node n;
    n.name = r.str();
    n.op = r.str();
    n.opset = r.pod<int32_t>();
    n.inputs = ids();
    n.outputs = ids();
    n.attrs = read_attrs(r);
    switch (r.pod<uint8_t>()) {
      case kNoState:
        break;
      case kLinearState:
        n.state = read_linear(r);
        break;
      case kDepthwiseState:
        n.state = read_depthwise(r);
        break;
      default:
        r.corrupt();
    }
    g.nodes.push_back(std::move(n));
  }
  uint64_t nlayers = r.pod<uint64_t>();
  if (nlayers > nnodes) r.corrupt();
  for (uint64_t i = 0; i < nlayers; ++i) {
    LayerPlan p;
    p.node = r.str();
    p.source_op = r.str();
    p.M = r.pod<int64_t>();
    p.N = r.pod<int64_t>();
    p.K = r.pod<int64_t>();
    p.is_24 = r.pod<uint8_t>();
    uint8_t t = r.pod<uint8_t>(), dt = r.pod<uint8_t>();
    if (t > uint8_t(Tactic::dense_direct) || dt > uint8_t(Tactic::dense_direct) || !is_dense(Tactic(dt)))
      r.corrupt();
    p.tactic = Tactic(t);
    p.dense_tactic = Tactic(dt);
    p.dense_ms = r.pod<double>();
    p.sparse_ms = r.pod<double>();
    p.sparse_kernel = r.str();
    m.layers.push_back(p);
  }
  if (!r.done()) r.corrupt();
  return m;
}

}  // namespace sparse24::engine

namespace sparse24::engine {

CompiledModel load_model(const std::filesystem::path& path, const PlanOptions& options) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("'{}': no such file", path.string());
  if (is_plan_file(path)) {
    set_threads(options.threads);
    return load_plan(path);
  }
  return compile(load_onnx(path), options);
}

}  // namespace sparse24::engine
