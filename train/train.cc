#include "train/train.h"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <random>

#include "engine/ir.h"
#include "format/pattern24.h"
#include "graph/weights.h"
#include "train/graph_trainer.h"
#include "train/progress.h"
#include "util/error.h"

namespace sparse24::train {

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

std::vector<int64_t> batch_shape(const engine::Graph& g, const Dataset& data, int64_t batch) {
  if (g.inputs.size() != 1)
    fail("the model has {} inputs; training and evaluation feed exactly one (the images)", g.inputs.size());
  const engine::Value& in = g.values[size_t(g.inputs[0])];
  if (in.declared_dtype && *in.declared_dtype != DType::f32)
    fail("model input '{}' is {}, not float32 pixels", in.name, dtype_name(*in.declared_dtype));
  std::vector<int64_t> shape = {batch};
  const std::vector<int64_t>& d = in.declared_shape;
  if (d.size() == data.sample_shape.size() + 1) {
    for (size_t i = 1; i < d.size(); ++i) shape.push_back(d[i] < 0 ? data.sample_shape[i - 1] : d[i]);
  } else if (d.size() == 2) {
    shape.push_back(d[1] < 0 ? data.features() : d[1]);
  } else if (d.empty()) {
    shape.insert(shape.end(), data.sample_shape.begin(), data.sample_shape.end());
  } else {
    for (size_t i = 1; i < d.size(); ++i) shape.push_back(d[i]);
  }
  if (shape_numel(shape) != batch * data.features())
    fail("model input '{}' takes {} per batch, but {} holds images of {} ({} values each)", in.name,
         shape_str(in.declared_shape), data.source, shape_str(data.sample_shape), data.features());
  return shape;
}

namespace {

Buf<float> gather(const Dataset& data, const std::vector<int64_t>& shape, std::span<const int64_t> rows,
                  std::vector<int64_t>& labels) {
  Buf<float> x(shape);
  const int64_t f = data.features();
  labels.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(x.ptr() + int64_t(i) * f, data.image(rows[i]), size_t(f) * sizeof(float));
    labels[i] = data.labels[size_t(rows[i])];
  }
  return x;
}

// Test accuracy through the trainer's own forward in inference mode (BN running statistics, no dropout).
double evaluate(GraphTrainer<float>& trainer, const Dataset& data, int64_t batch) {
  int64_t correct = 0;
  std::vector<int64_t> rows, labels;
  for (int64_t start = 0; start < data.size(); start += batch) {
    const int64_t n = std::min(batch, data.size() - start);
    rows.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = start + i;
    Buf<float> x = gather(data, batch_shape(trainer.graph(), data, n), rows, labels);
    int64_t hits = 0;
    softmax_cross_entropy<float>(trainer.forward(std::span(&x, 1), ForwardMode{}), labels, nullptr, &hits);
    correct += hits;
  }
  return double(correct) / double(data.size());
}

uint64_t step_seed(uint64_t seed, int64_t step) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ULL + uint64_t(step) + 1;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  return z ^ (z >> 31);
}

}  // namespace

std::map<std::string, std::vector<uint8_t>> fixed_masks(const OnnxModel& model,
                                                        std::vector<std::string>* unmasked) {
  std::map<std::string, std::vector<uint8_t>> masks;
  for (const WeightSite& site : find_weight_sites(model.proto.graph())) {
    if (!site.eligible || masks.count(site.weight)) continue;
    const onnx::TensorProto* init = find_initializer(model.proto.graph(), site.weight);
    if (!init) continue;
    const Tensor w = read_tensor(*init);
    if (w.dtype() != DType::f32) continue;
    const Tensor canonical = to_canonical(w, site);
    if (check_24(canonical).fraction() < 1.0) {
      if (unmasked) unmasked->push_back(site.weight);
      continue;
    }
    // The mask is the weight's own zero pattern: a group that is already 2:4 keeps exactly its zeros.
    Tensor keep(DType::f32, canonical.shape());
    for (int64_t i = 0; i < canonical.numel(); ++i)
      keep.data<float>()[i] = canonical.data<float>()[i] != 0.0f;
    const Tensor onnx_keep = from_canonical(keep, site);
    std::vector<uint8_t> m(size_t(onnx_keep.numel()));
    for (int64_t i = 0; i < onnx_keep.numel(); ++i) m[size_t(i)] = onnx_keep.data<float>()[i] != 0.0f;
    masks[site.weight] = std::move(m);
  }
  return masks;
}

TrainReport train_model(OnnxModel& model, const Dataset& train, const Dataset* test, const TrainOptions& o) {
  if (o.epochs < 1) fail("--epochs must be at least 1");
  if (o.batch_size < 1) fail("--batch-size must be at least 1");
  validate_schedule(o.schedule);
  const auto start = Clock::now();
  GraphTrainer<float> trainer(engine::import_onnx(model));
  const engine::Graph& g = trainer.graph();
  if (trainer.parameters().empty()) fail("the model has no float initializer to train");

  // The classes are the logits' width: every label must index one.
  {
    std::vector<int64_t> rows = {0}, labels;
    Buf<float> x = gather(train, batch_shape(g, train, 1), rows, labels);
    const Buf<float>& logits = trainer.forward(std::span(&x, 1), ForwardMode{});
    if (logits.rank() != 2 || logits.dim(0) != 1)
      fail("the model's output '{}' has shape {} for one image; training needs logits [batch, classes]",
           g.values[size_t(g.outputs[0])].name, shape_str(logits.shape));
    check_labels(train, logits.dim(1));
    if (test) check_labels(*test, logits.dim(1));
  }

  TrainReport report;
  std::map<std::string, std::vector<uint8_t>> masks;
  if (o.fixed_masks) {
    masks = fixed_masks(model, &report.unmasked);
    if (masks.empty()) fail("no weight of the model is 2:4: prune it first (sparse24 prune)");
  }
  std::vector<ParamSlot> slots;
  for (engine::ValueId id : trainer.parameters()) {
    Buf<float>& v = trainer.value(id);
    ParamSlot s;
    s.name = g.values[size_t(id)].name;
    s.data = v.ptr();
    s.size = v.numel();
    s.decay = v.rank() >= 2;
    report.parameters += v.numel();
    if (auto it = masks.find(s.name); it != masks.end()) {
      s.keep = it->second;
      MaskedWeight mw{"", s.name, 0, v.numel()};
      for (uint8_t k : s.keep) mw.kept += k;
      for (const engine::Node& n : g.nodes)
        if (n.inputs.size() > 1 && n.inputs[1] == id) mw.node = n.name;
      report.masked.push_back(mw);
    }
    slots.push_back(std::move(s));
  }
  Optimizer optimizer(o.optimizer, std::move(slots));

  const int64_t n = train.size();
  const int64_t batch = std::min(o.batch_size, n);
  const int64_t steps_per_epoch = n / batch;  // the last partial batch is dropped: BN needs whole batches
  const int64_t total_steps = steps_per_epoch * o.epochs;
  const std::vector<int64_t> shape = batch_shape(g, train, batch);
  std::mt19937_64 rng(o.seed ^ 0x5eed5eed5eedULL);
  std::vector<int64_t> order(static_cast<size_t>(n)), labels;
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  Buf<float> dlogits;
  std::vector<float*> grads;
  int64_t step = 0;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng() % uint64_t(i + 1))]);
    Progress bar(o.progress, fmt::format("epoch {}/{}", epoch, o.epochs), steps_per_epoch);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      Buf<float> x = gather(train, shape, std::span(order).subspan(size_t(s * batch), size_t(batch)), labels);
      const Buf<float>& logits =
          trainer.forward(std::span(&x, 1), ForwardMode{true, step_seed(o.seed, step), 0});
      int64_t hits = 0;
      const double loss = softmax_cross_entropy<float>(logits, labels, &dlogits, &hits);
      if (!std::isfinite(loss))
        fail("training diverged at epoch {} step {} (loss {}): lower --lr", epoch, s + 1, loss);
      trainer.backward(dlogits);
      trainer.update_running_statistics();
      grads.clear();
      for (engine::ValueId id : trainer.parameters()) grads.push_back(trainer.gradient(id).ptr());
      optimizer.step(learning_rate(o.schedule, step, total_steps, steps_per_epoch), grads);
      loss_sum += loss * double(batch);
      correct += hits;
      seen += batch;
      bar.update(s + 1, fmt::format("loss {:.4f} acc {:.2f}%", loss_sum / double(seen),
                                    100.0 * double(correct) / double(seen)));
    }
    bar.finish();
    EpochLog log;
    log.epoch = epoch;
    log.loss = loss_sum / double(std::max<int64_t>(seen, 1));
    log.train_accuracy = double(correct) / double(std::max<int64_t>(seen, 1));
    if (test) log.test_accuracy = evaluate(trainer, *test, o.eval_batch);
    log.seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    report.epochs.push_back(log);
    if (o.on_epoch) o.on_epoch(log);
  }
  report.steps = step;

  // Parameters and running statistics go back into the model's initializers, in their storage kind.
  std::vector<engine::ValueId> written = trainer.parameters();
  written.insert(written.end(), trainer.running_statistics().begin(), trainer.running_statistics().end());
  for (engine::ValueId id : written) {
    const std::string& name = g.values[size_t(id)].name;
    onnx::TensorProto* init = find_initializer(*model.proto.mutable_graph(), name);
    if (!init) fail("trained tensor '{}' is not an initializer of the model", name);
    write_tensor(*init, tensor_from_buf(trainer.value(id)));
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

}  // namespace sparse24::train
