#include "train/models.h"

#include <cmath>
#include <cstring>
#include <random>

#include "util/error.h"

namespace sparse24::train {

namespace {

class ModelBuilder {
 public:
  explicit ModelBuilder(uint64_t seed) : rng_(seed) {}

  onnx::GraphProto& graph() { return *model_.mutable_graph(); }

  // A float initializer with values from f(index).
  template <typename F>
  std::string init(const std::string& name, const std::vector<int64_t>& shape, F f) {
    onnx::TensorProto* t = graph().add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : shape) t->add_dims(d);
    std::string raw(size_t(shape_numel(shape)) * 4, '\0');
    for (int64_t i = 0; i < shape_numel(shape); ++i) {
      const float v = f(i);
      std::memcpy(raw.data() + i * 4, &v, 4);
    }
    t->set_raw_data(raw);
    return name;
  }
  std::string constant(const std::string& name, const std::vector<int64_t>& shape, float v) {
    return init(name, shape, [v](int64_t) { return v; });
  }
  // Uniform in [-bound, bound) from the model's generator: 24 random bits per value, the same on every
  // machine.
  std::string uniform(const std::string& name, const std::vector<int64_t>& shape, double bound) {
    return init(name, shape,
                [&](int64_t) { return float((double(rng_() >> 40) * 0x1.0p-24 * 2.0 - 1.0) * bound); });
  }

  onnx::NodeProto* node(const std::string& op, const std::string& name, std::vector<std::string> inputs,
                        const std::string& output) {
    onnx::NodeProto* n = graph().add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const std::string& in : inputs) n->add_input(in);
    n->add_output(output);
    return n;
  }
  static void ints(onnx::NodeProto* n, const std::string& name, std::vector<int64_t> values) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : values) a->add_ints(v);
  }
  static void integer(onnx::NodeProto* n, const std::string& name, int64_t value) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }
  static void real(onnx::NodeProto* n, const std::string& name, float value) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(value);
  }

  void io(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims) {
    v->set_name(name);
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    tt->mutable_shape()->add_dim()->set_dim_param("batch");
    for (int64_t d : dims) tt->mutable_shape()->add_dim()->set_dim_value(d);
  }

  // Gemm y = x · Wᵀ + b with W [out][in] (transB = 1, the PyTorch Linear layout).
  std::string linear(const std::string& name, const std::string& x, int64_t in, int64_t out,
                     bool relu_after) {
    const double bound = relu_after ? std::sqrt(6.0 / double(in)) : 1.0 / std::sqrt(double(in));
    const std::string w = uniform(name + ".weight", {out, in}, bound);
    const std::string b = constant(name + ".bias", {out}, 0.0f);
    integer(node("Gemm", name, {x, w, b}, name + ".out"), "transB", 1);
    return name + ".out";
  }

  // Conv 3x3 (pad 1, no bias: BN follows) -> BN -> Relu -> MaxPool 2x2.
  std::string conv_block(const std::string& name, const std::string& x, int64_t in, int64_t out) {
    const std::string w = uniform(name + ".weight", {out, in, 3, 3}, std::sqrt(6.0 / double(in * 9)));
    onnx::NodeProto* conv = node("Conv", name, {x, w}, name + ".out");
    ints(conv, "kernel_shape", {3, 3});
    ints(conv, "pads", {1, 1, 1, 1});
    const std::string bn = name + ".bn";
    onnx::NodeProto* norm =
        node("BatchNormalization", bn,
             {name + ".out", constant(bn + ".weight", {out}, 1.0f), constant(bn + ".bias", {out}, 0.0f),
              constant(bn + ".running_mean", {out}, 0.0f), constant(bn + ".running_var", {out}, 1.0f)},
             bn + ".out");
    real(norm, "epsilon", 1e-5f);
    real(norm, "momentum", 0.9f);
    node("Relu", name + ".relu", {bn + ".out"}, name + ".relu.out");
    onnx::NodeProto* pool = node("MaxPool", name + ".pool", {name + ".relu.out"}, name + ".pool.out");
    ints(pool, "kernel_shape", {2, 2});
    ints(pool, "strides", {2, 2});
    return name + ".pool.out";
  }

  OnnxModel finish(const std::string& name, const std::vector<int64_t>& input_dims, const std::string& logits,
                   int64_t classes) {
    graph().set_name(name);
    io(graph().add_input(), "pixels", input_dims);
    io(graph().add_output(), logits, {classes});
    model_.set_ir_version(8);
    model_.set_producer_name("sparse24 train");
    onnx::OperatorSetIdProto* opset = model_.add_opset_import();
    opset->set_domain("");
    opset->set_version(17);
    OnnxModel m;
    m.proto = std::move(model_);
    return m;
  }

 private:
  onnx::ModelProto model_;
  std::mt19937_64 rng_;
};

}  // namespace

std::vector<std::string> model_architectures() {
  return {"mlp", "cnn"};
}

OnnxModel build_model(const std::string& arch, uint64_t seed, const std::vector<int64_t>& image_shape,
                      int64_t classes, double pixel_mean, double pixel_std) {
  ModelBuilder b(seed);
  const int64_t pixels = shape_numel(image_shape);
  // (x - mean) · (1 / std): the normalisation travels with the model.
  auto normalise = [&]() {
    b.node("Sub", "normalize.sub", {"pixels", b.constant("normalize.mean", {1}, float(pixel_mean))},
           "centered");
    b.node("Mul", "normalize.mul", {"centered", b.constant("normalize.inv_std", {1}, float(1.0 / pixel_std))},
           "normalized");
    return std::string("normalized");
  };
  if (arch == "mlp") {
    std::string x = normalise();
    x = b.linear("fc1", x, pixels, 256, true);
    b.node("Relu", "relu1", {x}, "relu1.out");
    x = b.linear("fc2", "relu1.out", 256, 128, true);
    b.node("Relu", "relu2", {x}, "relu2.out");
    x = b.linear("fc3", "relu2.out", 128, classes, false);
    return b.finish("sparse24_mlp", {pixels}, x, classes);
  }
  if (arch == "cnn") {
    if (image_shape.size() != 3 || image_shape[1] % 4 != 0 || image_shape[2] % 4 != 0)
      fail("--arch cnn needs images [C, H, W] with H and W multiples of 4 (the data has {})",
           shape_str(image_shape));
    std::string x = normalise();
    x = b.conv_block("conv1", x, image_shape[0], 16);
    x = b.conv_block("conv2", x, 16, 32);
    b.node("Flatten", "flatten", {x}, "flat");
    const int64_t flat = 32 * (image_shape[1] / 4) * (image_shape[2] / 4);
    x = b.linear("fc1", "flat", flat, 128, true);
    b.node("Relu", "relu3", {x}, "relu3.out");
    x = b.linear("fc2", "relu3.out", 128, classes, false);
    return b.finish("sparse24_cnn", image_shape, x, classes);
  }
  fail("--arch must be mlp or cnn (got '{}')", arch);
}

}  // namespace sparse24::train
