// Every backward of train/ops against central finite differences of the forward, both in double precision
// through the same templated code that trains in float. The loss is Σ y · R for a fixed random R, so every
// output element matters; graphs are small so that the check stays fast under the sanitizers.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "engine/executor.h"
#include "engine/ir.h"
#include "train/graph_trainer.h"
#include "train/models.h"
#include "util/error.h"

namespace sparse24::train {
namespace {

using engine::Graph;
using engine::ValueId;

// Builds an engine Graph node by node.
class GraphMaker {
 public:
  explicit GraphMaker(uint64_t seed = 1) : rng_(seed) {}
  ValueId input(const std::string& name, std::vector<int64_t> shape) {
    ValueId id = g_.add_value(name);
    g_.values[size_t(id)].declared_dtype = DType::f32;
    g_.values[size_t(id)].declared_shape = std::move(shape);
    g_.inputs.push_back(id);
    return id;
  }
  // A float initializer with normal values scaled by `scale` and shifted by `shift`.
  ValueId param(const std::string& name, const std::vector<int64_t>& shape, double scale = 1.0,
                double shift = 0.0) {
    Tensor t(DType::f32, shape);
    std::normal_distribution<double> normal;
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(shift + scale * normal(rng_));
    return constant(name, std::move(t));
  }
  ValueId constant(const std::string& name, Tensor t) {
    ValueId id = g_.add_value(name);
    g_.values[size_t(id)].constant = std::move(t);
    return id;
  }
  ValueId ints(const std::string& name, const std::vector<int64_t>& v) {
    Tensor t(DType::i64, {int64_t(v.size())});
    for (size_t i = 0; i < v.size(); ++i) t.data<int64_t>()[i] = v[i];
    return constant(name, std::move(t));
  }
  ValueId node(const std::string& op, std::vector<ValueId> inputs, const engine::Attributes& attrs = {}) {
    engine::Node n;
    n.op = op;
    n.name = op + "#" + std::to_string(g_.nodes.size());
    n.inputs = std::move(inputs);
    n.attrs = attrs;
    n.outputs = {g_.add_value(n.name + ".out")};
    g_.nodes.push_back(n);
    return n.outputs[0];
  }
  Graph finish(ValueId output) {
    g_.outputs = {output};
    return g_;
  }

 private:
  Graph g_;
  std::mt19937_64 rng_;
};

engine::Attributes attrs(std::initializer_list<std::pair<std::string, engine::Attributes::Attr>> list) {
  engine::Attributes a;
  for (const auto& [k, v] : list) a.set(k, v);
  return a;
}

Buf<double> random_buf(std::vector<int64_t> shape, uint64_t seed, double scale = 1.0) {
  Buf<double> b(std::move(shape));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (double& v : b.data) v = scale * normal(rng);
  return b;
}

double dot(const Buf<double>& a, const Buf<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.data.size(); ++i) s += a.data[i] * b.data[i];
  return s;
}

// Compares the analytic gradient of every parameter and input with central differences.
void check_gradients(const Graph& graph, std::vector<Buf<double>> inputs, bool training) {
  GraphTrainer<double> t(graph, /*input_gradients=*/true);
  const ForwardMode mode{training, 42, 0};
  const Buf<double> r = random_buf(t.forward(inputs, mode).shape, 7);
  t.backward(r);
  auto loss = [&] { return dot(t.forward(inputs, mode), r); };
  constexpr double kEps = 1e-6;
  // (name, values to perturb, analytic gradient)
  std::vector<std::tuple<std::string, std::vector<double>*, std::vector<double>>> checks;
  for (ValueId id : t.parameters())
    checks.emplace_back(graph.values[size_t(id)].name, &t.value(id).data, t.gradient(id).data);
  for (size_t i = 0; i < inputs.size(); ++i)
    checks.emplace_back(graph.values[size_t(graph.inputs[i])].name, &inputs[i].data,
                        t.gradient(graph.inputs[i]).data);
  ASSERT_FALSE(checks.empty());
  for (auto& [name, values, analytic] : checks) {
    ASSERT_EQ(values->size(), analytic.size()) << name;
    double largest = 0;
    for (size_t i = 0; i < values->size(); ++i) {
      const double saved = (*values)[i];
      (*values)[i] = saved + kEps;
      const double up = loss();
      (*values)[i] = saved - kEps;
      const double down = loss();
      (*values)[i] = saved;
      const double numeric = (up - down) / (2 * kEps);
      EXPECT_NEAR(analytic[i], numeric, 1e-6 + 1e-5 * std::abs(numeric)) << name << "[" << i << "]";
      largest = std::max(largest, std::abs(analytic[i]));
    }
    EXPECT_GT(largest, 1e-3) << name << ": the gradient is zero everywhere, the check would prove nothing";
  }
}

TEST(Backward, GemmEveryTransposeWithBias) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      GraphMaker m;
      const ValueId x = m.input("x", ta ? std::vector<int64_t>{5, 3} : std::vector<int64_t>{3, 5});
      const ValueId w = m.param("w", tb ? std::vector<int64_t>{4, 5} : std::vector<int64_t>{5, 4});
      const ValueId c = m.param("c", {4});
      const ValueId y =
          m.node("Gemm", {x, w, c},
                 attrs({{"transA", int64_t(ta)}, {"transB", int64_t(tb)}, {"alpha", 0.7f}, {"beta", 1.3f}}));
      check_gradients(m.finish(y),
                      {random_buf(ta ? std::vector<int64_t>{5, 3} : std::vector<int64_t>{3, 5}, 3)}, true);
    }
}

TEST(Backward, GemmFullBiasMatrix) {
  GraphMaker m;
  const ValueId x = m.input("x", {3, 5});
  const ValueId y = m.node("Gemm", {x, m.param("w", {5, 4}), m.param("c", {3, 1})});
  check_gradients(m.finish(y), {random_buf({3, 5}, 3)}, true);
}

TEST(Backward, MatMulStackedRows) {
  GraphMaker m;
  const ValueId x = m.input("x", {2, 3, 8});
  const ValueId y = m.node("MatMul", {x, m.param("w", {8, 5})});
  check_gradients(m.finish(y), {random_buf({2, 3, 8}, 4)}, true);
}

TEST(Backward, ConvPaddedStridedDilated) {
  GraphMaker m;
  const ValueId x = m.input("x", {2, 3, 7, 6});
  const ValueId y = m.node("Conv", {x, m.param("w", {4, 3, 3, 2}), m.param("b", {4})},
                           attrs({{"pads", std::vector<int64_t>{1, 0, 2, 1}},
                                  {"strides", std::vector<int64_t>{2, 1}},
                                  {"dilations", std::vector<int64_t>{1, 2}}}));
  check_gradients(m.finish(y), {random_buf({2, 3, 7, 6}, 5)}, true);
}

TEST(Backward, ConvWithoutBias) {
  GraphMaker m;
  const ValueId x = m.input("x", {2, 4, 5, 5});
  const ValueId y =
      m.node("Conv", {x, m.param("w", {3, 4, 3, 3})}, attrs({{"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
  check_gradients(m.finish(y), {random_buf({2, 4, 5, 5}, 6)}, true);
}

TEST(Backward, ConvGroupedAndDepthwise) {
  for (int64_t groups : {int64_t(2), int64_t(4)}) {
    GraphMaker m;
    const ValueId x = m.input("x", {2, 4, 5, 6});
    const ValueId y = m.node("Conv", {x, m.param("w", {8, 4 / groups, 3, 3}), m.param("b", {8})},
                             attrs({{"group", groups},
                                    {"pads", std::vector<int64_t>{1, 1, 1, 1}},
                                    {"strides", std::vector<int64_t>{1, 2}}}));
    check_gradients(m.finish(y), {random_buf({2, 4, 5, 6}, 20)}, true);
  }
}

TEST(Backward, ReluAndGelu) {
  for (const char* approximate : {"none", "tanh"}) {
    GraphMaker m;
    const ValueId x = m.input("x", {3, 7});
    const ValueId h = m.node("Gelu", {x}, attrs({{"approximate", std::string(approximate)}}));
    const ValueId y = m.node("Relu", {m.node("Add", {h, m.param("shift", {7}, 0.5)})});
    check_gradients(m.finish(y), {random_buf({3, 7}, 8)}, true);
  }
}

TEST(Backward, MaxPoolOverlappingPadded) {
  GraphMaker m;
  const ValueId x = m.input("x", {2, 2, 7, 7});
  const ValueId y = m.node("MaxPool", {x},
                           attrs({{"kernel_shape", std::vector<int64_t>{3, 3}},
                                  {"strides", std::vector<int64_t>{2, 2}},
                                  {"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
  check_gradients(m.finish(y), {random_buf({2, 2, 7, 7}, 9)}, true);
}

TEST(Backward, AveragePoolWithAndWithoutPadCount) {
  for (int64_t include_pad = 0; include_pad < 2; ++include_pad) {
    GraphMaker m;
    const ValueId x = m.input("x", {2, 2, 6, 5});
    const ValueId y = m.node("AveragePool", {x},
                             attrs({{"kernel_shape", std::vector<int64_t>{3, 2}},
                                    {"strides", std::vector<int64_t>{2, 2}},
                                    {"pads", std::vector<int64_t>{1, 1, 1, 0}},
                                    {"count_include_pad", include_pad}}));
    check_gradients(m.finish(y), {random_buf({2, 2, 6, 5}, 10)}, true);
  }
}

TEST(Backward, GlobalAveragePoolFlattenReshape) {
  GraphMaker m;
  const ValueId x = m.input("x", {2, 6, 3, 4});
  const ValueId pooled = m.node("GlobalAveragePool", {x});
  const ValueId flat = m.node("Flatten", {pooled});
  const ValueId y = m.node("Reshape", {flat, m.ints("shape", {3, -1})});
  check_gradients(m.finish(y), {random_buf({2, 6, 3, 4}, 11)}, true);
}

TEST(Backward, BatchNormalizationTrainingMode) {
  GraphMaker m;
  const ValueId x = m.input("x", {4, 3, 2, 3});
  const ValueId y = m.node("BatchNormalization", {x, m.param("scale", {3}, 0.5, 1.0), m.param("bias", {3}),
                                                  m.param("mean", {3}), m.param("var", {3}, 0.1, 1.0)});
  check_gradients(m.finish(y), {random_buf({4, 3, 2, 3}, 12, 2.0)}, true);
}

TEST(Backward, BatchNormalizationInferenceMode) {
  GraphMaker m;
  const ValueId x = m.input("x", {3, 2, 5});
  const ValueId y = m.node("BatchNormalization", {x, m.param("scale", {2}, 0.5, 1.0), m.param("bias", {2}),
                                                  m.param("mean", {2}), m.param("var", {2}, 0.1, 1.0)});
  check_gradients(m.finish(y), {random_buf({3, 2, 5}, 13)}, false);
}

TEST(Backward, LayerNormalizationLastAxisAndTwoAxes) {
  for (int64_t axis : {int64_t(-1), int64_t(1)}) {
    GraphMaker m;
    const ValueId x = m.input("x", {3, 2, 5});
    const std::vector<int64_t> norm = axis == -1 ? std::vector<int64_t>{5} : std::vector<int64_t>{2, 5};
    const ValueId y =
        m.node("LayerNormalization", {x, m.param("gamma", norm, 0.5, 1.0), m.param("beta", norm)},
               attrs({{"axis", axis}}));
    check_gradients(m.finish(y), {random_buf({3, 2, 5}, 14)}, true);
  }
}

TEST(Backward, AddSubMulBroadcast) {
  GraphMaker m;
  const ValueId a = m.input("a", {2, 3, 4});
  const ValueId b = m.input("b", {3, 1});
  const ValueId s = m.node("Add", {a, b});
  const ValueId d = m.node("Sub", {m.param("p", {4}), s});
  const ValueId y = m.node("Mul", {d, m.node("Mul", {a, a})});
  check_gradients(m.finish(y), {random_buf({2, 3, 4}, 15), random_buf({3, 1}, 16)}, true);
}

TEST(Backward, DropoutTrainingMode) {
  GraphMaker m;
  const ValueId x = m.input("x", {4, 16});
  Tensor ratio(DType::f32, {});
  ratio.data<float>()[0] = 0.3f;
  const ValueId y =
      m.node("Dropout", {m.node("Gemm", {x, m.param("w", {16, 8})}), m.constant("ratio", ratio)});
  check_gradients(m.finish(y), {random_buf({4, 16}, 17)}, true);
  // In training mode some elements are dropped and the rest scaled by 1 / (1 - ratio).
  GraphTrainer<double> t(m.finish(y));
  const Buf<double> x_in = random_buf({4, 16}, 17);
  const Buf<double> train_out = t.forward(std::span(&x_in, 1), ForwardMode{true, 1, 0});
  const Buf<double> infer_out = t.forward(std::span(&x_in, 1), ForwardMode{});
  int dropped = 0;
  for (size_t i = 0; i < train_out.data.size(); ++i) {
    if (train_out.data[i] == 0.0) {
      ++dropped;
    } else {
      EXPECT_NEAR(train_out.data[i], infer_out.data[i] / (1.0 - double(0.3f)),
                  1e-12 * std::abs(train_out.data[i]));
    }
  }
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, 32);
}

TEST(Backward, SoftmaxCrossEntropy) {
  Buf<double> logits = random_buf({5, 4}, 18, 2.0);
  const std::vector<int64_t> labels = {0, 3, 1, 1, 2};
  Buf<double> grad;
  softmax_cross_entropy(logits, labels, &grad, nullptr);
  for (size_t i = 0; i < logits.data.size(); ++i) {
    const double saved = logits.data[i];
    logits.data[i] = saved + 1e-6;
    const double up = softmax_cross_entropy<double>(logits, labels, nullptr, nullptr);
    logits.data[i] = saved - 1e-6;
    const double down = softmax_cross_entropy<double>(logits, labels, nullptr, nullptr);
    logits.data[i] = saved;
    EXPECT_NEAR(grad.data[i], (up - down) / 2e-6, 1e-7) << i;
  }
}

// The built architectures end to end (normalisation, Conv, BN in training mode, pools, Gemm) with the loss.
TEST(Backward, BuiltModelsWithCrossEntropy) {
  for (const std::string arch : {"mlp", "cnn"}) {
    const std::vector<int64_t> image =
        arch == "cnn" ? std::vector<int64_t>{1, 8, 8} : std::vector<int64_t>{12};
    OnnxModel model = build_model(arch, 3, image, 3, 0.5, 0.25);
    GraphTrainer<double> t(engine::import_onnx(model));
    std::vector<int64_t> shape = {2};
    shape.insert(shape.end(), image.begin(), image.end());
    Buf<double> x = random_buf(shape, 19, 0.3);
    for (double& v : x.data) v = std::abs(v);
    const std::vector<int64_t> labels = {2, 0};
    const ForwardMode mode{true, 5, 0};
    Buf<double> dlogits;
    softmax_cross_entropy(t.forward(std::span(&x, 1), mode), labels, &dlogits, nullptr);
    t.backward(dlogits);
    for (ValueId id : t.parameters()) {
      Buf<double>& w = t.value(id);
      const Buf<double> analytic = t.gradient(id);
      // A few elements per tensor keep the check fast; they spread over the whole tensor.
      for (int64_t i = 0; i < w.numel(); i += std::max<int64_t>(1, w.numel() / 5)) {
        const double saved = w.data[size_t(i)];
        w.data[size_t(i)] = saved + 1e-6;
        const double up =
            softmax_cross_entropy<double>(t.forward(std::span(&x, 1), mode), labels, nullptr, nullptr);
        w.data[size_t(i)] = saved - 1e-6;
        const double down =
            softmax_cross_entropy<double>(t.forward(std::span(&x, 1), mode), labels, nullptr, nullptr);
        w.data[size_t(i)] = saved;
        const double numeric = (up - down) / 2e-6;
        EXPECT_NEAR(analytic.data[size_t(i)], numeric, 1e-7 + 1e-5 * std::abs(numeric))
            << arch << " " << t.graph().values[size_t(id)].name << "[" << i << "]";
      }
    }
  }
}

// The training forward of the ops the built models do not use, against the inference engine's ops (the
// oracle for what is deployed): pools, Reshape, LayerNormalization, MatMul, Gelu, Add, Dropout in inference.
TEST(TrainForward, OtherOpsMatchTheEngine) {
  GraphMaker m;
  const ValueId x = m.input("x", {2, 3, 6, 6});
  const ValueId avg = m.node("AveragePool", {x},
                             attrs({{"kernel_shape", std::vector<int64_t>{3, 3}},
                                    {"strides", std::vector<int64_t>{2, 2}},
                                    {"pads", std::vector<int64_t>{1, 1, 1, 1}}}));
  const ValueId max =
      m.node("MaxPool", {x},
             attrs({{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}}));
  const ValueId sum = m.node("Add", {avg, max});
  const ValueId rows = m.node("Reshape", {sum, m.ints("shape", {2, 3, -1})});
  const ValueId norm =
      m.node("LayerNormalization", {rows, m.param("gamma", {9}, 0.5, 1.0), m.param("beta", {9})});
  const ValueId proj = m.node("Gelu", {m.node("MatMul", {norm, m.param("w", {9, 8})})});
  Tensor ratio(DType::f32, {});
  ratio.data<float>()[0] = 0.5f;
  const ValueId drop =
      m.node("Dropout", {m.node("Add", {proj, m.param("b", {8})}), m.constant("ratio", ratio)});
  const ValueId y = m.node("Flatten", {m.node("GlobalAveragePool", {drop})});
  const Graph g = m.finish(y);
  GraphTrainer<float> trainer(g);
  engine::Executor engine(g);
  Buf<float> in({2, 3, 6, 6});
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal;
  for (float& v : in.data) v = normal(rng);
  const Buf<float>& ours = trainer.forward(std::span(&in, 1), ForwardMode{});
  const std::vector<Tensor> theirs = engine.run({{"x", tensor_from_buf(in)}});
  ASSERT_EQ(ours.shape, theirs[0].shape());
  float largest = 0;
  for (int64_t i = 0; i < ours.numel(); ++i) {
    EXPECT_NEAR(ours.data[size_t(i)], theirs[0].data<float>()[i], 1e-5) << i;
    largest = std::max(largest, std::abs(ours.data[size_t(i)]));
  }
  EXPECT_GT(largest, 0.01f);
}

TEST(Backward, UntrainableOpIsNamed) {
  GraphMaker m;
  const ValueId x = m.input("x", {2, 4});
  const ValueId y = m.node("Softmax", {m.node("Gemm", {x, m.param("w", {4, 3})})});
  try {
    GraphTrainer<float> t(m.finish(y));
    FAIL() << "a Softmax on the gradient path was accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "op Softmax (node 'Softmax#1') cannot be trained");
  }
}

}  // namespace
}  // namespace sparse24::train
