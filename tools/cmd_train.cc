// sparse24 train / finetune / eval: dense training of a built architecture, ASP-style retraining of a pruned
// model with fixed 2:4 masks, and accuracy through the inference engine.
#include <fmt/format.h>

#include <chrono>
#include <cstring>

#include "engine/plan_file.h"
#include "tools/cli_util.h"
#include "train/models.h"
#include "train/progress.h"
#include "train/train.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace sparse24::cli {

namespace {

using namespace sparse24::train;

// Where the images come from (every command).
struct DataArgs {
  std::string data = "fashion-mnist";
  std::string labels;
  int64_t limit = 0;
};

void add_data_options(CLI::App* cmd, DataArgs& a) {
  cmd->add_option(
         "--data", a.data,
         "fashion-mnist (Debian's dataset-fashion-mnist), a folder of idx .gz files, a .npz with arrays "
         "'images' (float32 in [0,1], [N,1,28,28] or [N,784]; or uint8) and 'labels' (int64 [N]), or an "
         "images .npy (with --labels)")
      ->capture_default_str();
  cmd->add_option("--labels", a.labels, "labels .npy (int64 [N]) when --data is an images .npy");
  cmd->add_option("--limit", a.limit, "use only the first N images of each split (0: all)")
      ->capture_default_str();
}

// Everything a training run takes.
struct TrainArgs : DataArgs {
  std::string model, arch, output, json, test_data, test_labels;
  TrainOptions o;
  int threads = 0;
  bool progress = false, no_test = false;
};

void add_train_options(CLI::App* cmd, TrainArgs& a) {
  add_data_options(cmd, a);
  cmd->add_option(
      "--test-data", a.test_data,
      "evaluation data after each epoch (default: the test split of an idx --data; none for files)");
  cmd->add_option("--test-labels", a.test_labels, "labels .npy when --test-data is an images .npy");
  cmd->add_flag("--no-test", a.no_test, "skip the evaluation after each epoch");
  cmd->add_option("-o,--output", a.output, "where to write the trained model (.onnx)")->required();
  cmd->add_option("--epochs", a.o.epochs, "passes over the training data")->capture_default_str();
  cmd->add_option("--batch-size", a.o.batch_size, "images per step")->capture_default_str();
  cmd->add_option("--seed", a.o.seed, "seed of the initial weights, the shuffling and dropout")
      ->capture_default_str();
  cmd->add_option("--optimizer", a.o.optimizer.kind, "sgd (momentum) or adamw")->capture_default_str();
  cmd->add_option("--lr", a.o.schedule.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--momentum", a.o.optimizer.momentum, "SGD momentum")->capture_default_str();
  cmd->add_option("--weight-decay", a.o.optimizer.weight_decay,
                  "weight decay of the weights (L2 for sgd, decoupled for adamw)")
      ->capture_default_str();
  cmd->add_option("--schedule", a.o.schedule.kind, "cosine, step or constant")->capture_default_str();
  cmd->add_option("--warmup-epochs", a.o.schedule.warmup_epochs, "linear warmup (fractions allowed)")
      ->capture_default_str();
  cmd->add_option("--step-epochs", a.o.schedule.step_epochs, "--schedule step: epochs between decays");
  cmd->add_option("--step-gamma", a.o.schedule.gamma, "--schedule step: factor per decay")
      ->capture_default_str();
  cmd->add_option("--threads", a.threads, "threads (0: every core)")->capture_default_str();
  cmd->add_flag("--progress", a.progress, "progress bar on stderr even when it is not a terminal");
  cmd->add_option("--json", a.json, "also write the epochs and settings as JSON");
}

nlohmann::json report_json(const TrainArgs& a, const TrainReport& r) {
  nlohmann::json epochs = nlohmann::json::array();
  for (const EpochLog& e : r.epochs)
    epochs.push_back(
        {{"epoch", e.epoch},
         {"loss", e.loss},
         {"train_accuracy", e.train_accuracy},
         {"test_accuracy", e.test_accuracy < 0 ? nlohmann::json() : nlohmann::json(e.test_accuracy)},
         {"seconds", e.seconds}});
  nlohmann::json masked = nlohmann::json::array();
  for (const MaskedWeight& m : r.masked)
    masked.push_back({{"node", m.node}, {"weight", m.weight}, {"kept", m.kept}, {"total", m.total}});
  return {{"output", a.output},
          {"data", a.data},
          {"seed", a.o.seed},
          {"epochs", epochs},
          {"batch_size", a.o.batch_size},
          {"optimizer", a.o.optimizer.kind},
          {"lr", a.o.schedule.lr},
          {"schedule", a.o.schedule.kind},
          {"parameters", r.parameters},
          {"steps", r.steps},
          {"seconds", r.seconds},
          {"masked", masked},
          {"unmasked", r.unmasked},
          {"test_accuracy", r.epochs.empty() || r.epochs.back().test_accuracy < 0
                                ? nlohmann::json()
                                : nlohmann::json(r.epochs.back().test_accuracy)}};
}

void run_training(TrainArgs& a, OnnxModel model, const Dataset& train_data) {
  std::optional<Dataset> test;
  if (!a.no_test) {
    if (!a.test_data.empty()) {
      test = load_dataset(a.test_data, Split::test, a.test_labels, a.limit);
    } else {
      std::error_code ec;
      if (a.data == "fashion-mnist" || std::filesystem::is_directory(a.data, ec))
        test = load_dataset(a.data, Split::test, "", a.limit);
    }
  }
  a.o.progress = a.progress || stderr_is_terminal();
  a.o.on_epoch = [&](const EpochLog& e) {
    fmt::print("epoch {}/{}: loss {:.4f}, train accuracy {:.2f}%{}, {:.1f} s\n", e.epoch, a.o.epochs, e.loss,
               100.0 * e.train_accuracy,
               test
                   ? fmt::format(", test accuracy {:.2f}% ({} images)", 100.0 * e.test_accuracy, test->size())
                   : std::string(),
               e.seconds);
    std::fflush(stdout);
  };
  TrainReport r = train_model(model, train_data, test ? &*test : nullptr, a.o);
  save_onnx(model, a.output);
  fmt::print("{} trained: {} parameters, {} steps in {:.1f} s{} -> {}\n", model.proto.graph().name(),
             r.parameters, r.steps, r.seconds,
             r.epochs.back().test_accuracy >= 0
                 ? fmt::format(", test accuracy {:.2f}%", 100.0 * r.epochs.back().test_accuracy)
                 : std::string(),
             a.output);
  if (!r.masked.empty()) {
    Table t({"layer", "weight", "kept", "of", "density"});
    for (const MaskedWeight& m : r.masked)
      t.add({m.node, m.weight, std::to_string(m.kept), std::to_string(m.total),
             fmt::format("{:.3f}", double(m.kept) / double(m.total))});
    t.print();
  }
  for (const std::string& w : r.unmasked)
    fmt::print("note: '{}' is eligible but was not 2:4 in the input: trained dense\n", w);
  if (!a.json.empty()) write_json(a.json, report_json(a, r));
}

void run_train(TrainArgs& a) {
  check_output_path(a.data, a.output);
  engine::set_threads(a.threads);
  const Dataset data = load_dataset(a.data, Split::train, a.labels, a.limit);
  const auto [mean, stddev] = pixel_statistics(data);
  if (!(stddev > 0)) fail("{}: every pixel has the same value; nothing to learn", data.source);
  // Build-time class count: Fashion-MNIST's 10, or one past the largest label of the user's data.
  int64_t classes = 10;
  for (int64_t l : data.labels) classes = std::max(classes, l + 1);
  OnnxModel model = build_model(a.arch, a.o.seed, data.sample_shape, classes, mean, stddev);
  run_training(a, std::move(model), data);
}

void run_finetune(TrainArgs& a) {
  check_output_path(a.model, a.output);
  engine::set_threads(a.threads);
  OnnxModel model = load_onnx(a.model);
  const Dataset data = load_dataset(a.data, Split::train, a.labels, a.limit);
  a.o.fixed_masks = true;
  run_training(a, std::move(model), data);
}

// --- eval ------------------------------------------------------------------------------------------------

struct EvalArgs : DataArgs {
  std::string model, json, sparsity = "enable";
  int threads = 0;
  int64_t batch = 256;
  bool progress = false;
};

void run_eval(const EvalArgs& a) {
  if (a.batch < 1) fail("--batch must be at least 1");
  const Dataset data = load_dataset(a.data, Split::test, a.labels, a.limit);
  engine::PlanOptions po;
  po.batch = a.batch;
  po.threads = a.threads;
  po.sparsity = engine::parse_sparsity(a.sparsity);
  engine::CompiledModel m = engine::load_model(a.model, po);
  engine::Executor exec(std::move(m.graph));
  const engine::Graph& g = exec.graph();
  const std::string input = g.values[size_t(g.inputs.at(0))].name;
  const auto start = std::chrono::steady_clock::now();
  int64_t correct = 0;
  const int64_t batches = (data.size() + a.batch - 1) / a.batch;
  Progress bar(a.progress || stderr_is_terminal(), "eval", batches);
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t first = b * a.batch, n = std::min(a.batch, data.size() - first);
    Tensor x(DType::f32, batch_shape(g, data, n));
    std::memcpy(x.data<float>(), data.image(first), size_t(n * data.features()) * sizeof(float));
    const std::vector<Tensor> out = exec.run({{input, std::move(x)}});
    const Tensor& logits = out.at(0);
    if (logits.rank() != 2 || logits.dim(0) != n || logits.dtype() != DType::f32)
      fail("'{}': output {} is not float logits [batch, classes] for a batch of {}", a.model,
           shape_str(logits.shape()), n);
    const int64_t classes = logits.dim(1);
    if (b == 0) check_labels(data, classes);
    for (int64_t r = 0; r < n; ++r) {
      const float* z = logits.data<float>() + r * classes;
      int64_t best = 0;
      for (int64_t c = 1; c < classes; ++c)
        if (z[c] > z[best]) best = c;
      correct += best == data.labels[size_t(first + r)];
    }
    bar.update(b + 1, fmt::format("accuracy {:.2f}%", 100.0 * double(correct) / double(first + n)));
  }
  bar.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double accuracy = double(correct) / double(data.size());
  fmt::print("{}: accuracy {:.2f}% ({} / {}) on {}, {:.1f} s\n", a.model, 100.0 * accuracy, correct,
             data.size(), data.source, seconds);
  if (!a.json.empty())
    write_json(a.json, {{"model", a.model},
                        {"data", data.source},
                        {"images", data.size()},
                        {"correct", correct},
                        {"accuracy", accuracy},
                        {"seconds", seconds}});
}

}  // namespace

void add_train_commands(CLI::App& app) {
  auto t = std::make_shared<TrainArgs>();
  CLI::App* train = app.add_subcommand(
      "train", "Build an architecture (mlp or cnn) as ONNX, train it on the data and write it (dense).");
  train->add_option("--arch", t->arch, "mlp or cnn")->required();
  add_train_options(train, *t);
  train->callback([t] { run_train(*t); });

  auto f = std::make_shared<TrainArgs>();
  f->o.schedule.lr = 0.01;
  CLI::App* finetune = app.add_subcommand(
      "finetune",
      "Retrain a 2:4-pruned ONNX model with its masks fixed (ASP): pruned weights stay exactly zero.");
  finetune->add_option("model", f->model, "the pruned model (.onnx, from sparse24 prune)")->required();
  add_train_options(finetune, *f);
  finetune->callback([f] { run_finetune(*f); });

  auto e = std::make_shared<EvalArgs>();
  CLI::App* eval = app.add_subcommand(
      "eval",
      "Accuracy of a model (.onnx or .plan) through the inference engine (default: Fashion-MNIST test).");
  eval->add_option("model", e->model, "ONNX model or plan")->required();
  add_data_options(eval, *e);
  eval->add_option("--batch", e->batch, "images per run")->capture_default_str();
  eval->add_option("--threads", e->threads, "threads (0: every core)")->capture_default_str();
  eval->add_option("--sparsity", e->sparsity, "for an .onnx: disable, enable or force 2:4 kernels")
      ->capture_default_str();
  eval->add_flag("--progress", e->progress, "progress bar on stderr even when it is not a terminal");
  eval->add_option("--json", e->json, "also write the accuracy as JSON");
  eval->callback([e] { run_eval(*e); });
}

}  // namespace sparse24::cli
