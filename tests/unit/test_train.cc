// Training beyond single backwards: the training forward against the inference engine (the oracle for what
// is deployed), fixed 2:4 masks through optimizer steps, seeded runs that repeat bit for bit, the schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/executor.h"
#include "format/pattern24.h"
#include "graph/weights.h"
#include "prune/prune.h"
#include "train/graph_trainer.h"
#include "train/models.h"
#include "train/optimizer.h"
#include "train/train.h"
#include "util/error.h"

namespace sparse24::train {
namespace {

std::vector<float> random_values(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

// A tiny labelled set whose classes depend on the pixels, so that training has something to learn.
Dataset synthetic(int64_t count, std::vector<int64_t> image, uint64_t seed) {
  Dataset d;
  d.source = "synthetic";
  d.sample_shape = std::move(image);
  d.images = random_values(count * d.features(), seed);
  for (int64_t i = 0; i < count; ++i) {
    const float* x = d.image(i);
    d.labels.push_back(x[0] + x[1] > 1.0f ? (x[2] > 0.5f ? 2 : 1) : 0);
  }
  return d;
}

TEST(TrainForward, MatchesTheInferenceEngine) {
  for (const std::string arch : {"mlp", "cnn"}) {
    const std::vector<int64_t> image =
        arch == "cnn" ? std::vector<int64_t>{1, 12, 8} : std::vector<int64_t>{20};
    const OnnxModel model = build_model(arch, 11, image, 5, 0.4, 0.3);
    GraphTrainer<float> trainer(engine::import_onnx(model));
    engine::Executor engine(engine::import_onnx(model));
    std::vector<int64_t> shape = {6};
    shape.insert(shape.end(), image.begin(), image.end());
    Buf<float> x(shape);
    x.data = random_values(x.numel(), 3);
    const Buf<float>& ours = trainer.forward(std::span(&x, 1), ForwardMode{});
    const std::vector<Tensor> theirs = engine.run({{"pixels", tensor_from_buf(x)}});
    ASSERT_EQ(ours.shape, theirs[0].shape()) << arch;
    double largest = 0;
    for (int64_t i = 0; i < ours.numel(); ++i) {
      EXPECT_NEAR(ours.data[size_t(i)], theirs[0].data<float>()[i],
                  1e-4 * (1 + std::abs(ours.data[size_t(i)])))
          << arch << " logit " << i;
      largest = std::max(largest, double(std::abs(ours.data[size_t(i)])));
    }
    EXPECT_GT(largest, 0.01) << arch;
  }
}

TEST(Masks, PrunedPositionsOfWeightGradientAndStateStayZero) {
  for (const std::string kind : {"sgd", "adamw"}) {
    ParamSlot p;
    std::vector<float> w = random_values(64, 1);
    for (float& v : w) v -= 0.5f;
    p.name = "w";
    p.data = w.data();
    p.size = 64;
    p.decay = true;
    for (int64_t i = 0; i < 64; ++i) p.keep.push_back((i % 4) < 2);
    for (int64_t i = 0; i < 64; ++i)
      if (!p.keep[size_t(i)]) w[size_t(i)] = 0.0f;
    const std::vector<float> before = w;
    OptimizerOptions o;
    o.kind = kind;
    o.weight_decay = 0.01;
    Optimizer opt(o, {p});
    std::vector<float> grad(64);
    for (int step = 0; step < 5; ++step) {
      grad = random_values(64, 10 + uint64_t(step));  // dense gradients: the mask must remove them
      float* g = grad.data();
      opt.step(0.1, std::span(&g, 1));
      for (int64_t i = 0; i < 64; ++i) {
        if (p.keep[size_t(i)]) continue;
        EXPECT_EQ(w[size_t(i)], 0.0f) << kind << " weight " << i;
        EXPECT_EQ(grad[size_t(i)], 0.0f) << kind << " gradient " << i;
        EXPECT_EQ(opt.state(0, 0)[size_t(i)], 0.0f) << kind << " first state " << i;
        if (kind == "adamw") {
          EXPECT_EQ(opt.state(0, 1)[size_t(i)], 0.0f) << kind << " second moment " << i;
        }
      }
    }
    int changed = 0;
    for (int64_t i = 0; i < 64; ++i) changed += p.keep[size_t(i)] && w[size_t(i)] != before[size_t(i)];
    EXPECT_EQ(changed, 32) << kind << ": every kept weight trains";
  }
}

TEST(Masks, FinetuneKeepsTheZerosOfThePrunedModel) {
  const Dataset data = synthetic(96, {1, 8, 8}, 4);
  OnnxModel model = build_model("cnn", 2, {1, 8, 8}, 3, 0.5, 0.3);
  prune_model(model, PruneOptions{});
  const OnnxModel pruned = model;
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 16;
  o.fixed_masks = true;
  o.schedule.lr = 0.05;
  const TrainReport r = train_model(model, data, nullptr, o);
  EXPECT_EQ(r.masked.size(), 3u);  // conv2, fc1, fc2 (conv1 has one input channel: not eligible)
  int weights_checked = 0;
  for (const WeightSite& site : find_weight_sites(model.proto.graph())) {
    if (!site.eligible) continue;
    const Tensor before = read_tensor(*find_initializer(pruned.proto.graph(), site.weight));
    const Tensor after = read_tensor(*find_initializer(model.proto.graph(), site.weight));
    EXPECT_DOUBLE_EQ(check_24(to_canonical(after, site)).fraction(), 1.0) << site.weight;
    int64_t moved = 0;
    for (int64_t i = 0; i < before.numel(); ++i) {
      if (before.data<float>()[i] == 0.0f)
        EXPECT_EQ(after.data<float>()[i], 0.0f) << site.weight << "[" << i << "]";
      else
        moved += after.data<float>()[i] != before.data<float>()[i];
    }
    EXPECT_GT(moved, 0) << site.weight << " did not train";
    ++weights_checked;
  }
  EXPECT_EQ(weights_checked, 3);
}

// Every initializer's bytes, in order.
std::vector<std::string> weights_of(const OnnxModel& m) {
  std::vector<std::string> out;
  for (const onnx::TensorProto& t : m.proto.graph().initializer()) {
    const Tensor v = read_tensor(t);
    out.emplace_back(reinterpret_cast<const char*>(v.bytes()), v.nbytes());
  }
  return out;
}

TEST(Determinism, SameSeedSameBitsOtherSeedOtherBits) {
  const Dataset data = synthetic(64, {16}, 5);
  auto run = [&](uint64_t seed) {
    OnnxModel m = build_model("mlp", seed, {16}, 3, 0.5, 0.3);
    TrainOptions o;
    o.epochs = 2;
    o.batch_size = 8;
    o.seed = seed;
    o.optimizer.kind = "adamw";
    o.schedule.lr = 0.01;
    o.schedule.warmup_epochs = 0.5;
    train_model(m, data, &data, o);
    return weights_of(m);
  };
  const auto a = run(1), b = run(1), c = run(2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Determinism, TrainingLearnsTheSyntheticTask) {
  const Dataset data = synthetic(256, {16}, 6);
  OnnxModel m = build_model("mlp", 1, {16}, 3, 0.5, 0.3);
  TrainOptions o;
  o.epochs = 6;
  o.batch_size = 32;
  o.schedule.lr = 0.05;
  const TrainReport r = train_model(m, data, &data, o);
  EXPECT_LT(r.epochs.back().loss, r.epochs.front().loss);
  EXPECT_GT(r.epochs.back().test_accuracy, 0.8);
}

TEST(Schedule, CosineWarmupAndStep) {
  ScheduleOptions s;
  s.lr = 0.1;
  s.warmup_epochs = 1;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0, 100, 10), 0.01);
  EXPECT_DOUBLE_EQ(learning_rate(s, 9, 100, 10), 0.1);
  EXPECT_NEAR(learning_rate(s, 55, 100, 10), 0.05, 1e-12);  // half way through the cosine after warmup
  EXPECT_NEAR(learning_rate(s, 100, 100, 10), 0.0, 1e-12);
  s.kind = "step";
  s.warmup_epochs = 0;
  s.step_epochs = 2;
  s.gamma = 0.5;
  EXPECT_DOUBLE_EQ(learning_rate(s, 19, 100, 10), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(s, 20, 100, 10), 0.05);
  s.kind = "linear";
  EXPECT_THROW(validate_schedule(s), Error);
}

TEST(TrainErrors, LabelOutOfRangeIsNamed) {
  Dataset data = synthetic(16, {16}, 7);
  data.labels[5] = 9;
  OnnxModel m = build_model("mlp", 1, {16}, 3, 0.5, 0.3);
  TrainOptions o;
  o.epochs = 1;
  try {
    train_model(m, data, nullptr, o);
    FAIL() << "label 9 for a 3-class model was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("label 9 of image 5 is out of range"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace sparse24::train
