#pragma once
// Training an ONNX model in place: dense training, or ASP-style retraining of a 2:4-pruned model with the
// masks fixed at the zeros of the pruned weights.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/ir.h"
#include "graph/onnx_io.h"
#include "train/data.h"
#include "train/optimizer.h"

namespace sparse24::train {

/// One epoch's numbers.
struct EpochLog {
  int epoch = 0;
  double loss = 0, train_accuracy = 0;
  double test_accuracy = -1;  ///< -1 without test data
  double seconds = 0;
};

/// How to train.
struct TrainOptions {
  int epochs = 5;
  int64_t batch_size = 128;
  uint64_t seed = 0;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  bool fixed_masks = false;                       ///< retraining: every 2:4 weight keeps its zeros (ASP)
  bool progress = false;                          ///< progress bar on stderr
  int64_t eval_batch = 500;                       ///< batch size of the per-epoch test evaluation
  std::function<void(const EpochLog&)> on_epoch;  ///< called after each epoch (the CLI prints it)
};

/// A weight trained under a fixed mask.
struct MaskedWeight {
  std::string node, weight;
  int64_t kept = 0, total = 0;
};

/// What a training run did.
struct TrainReport {
  std::vector<EpochLog> epochs;
  std::vector<MaskedWeight> masked;
  std::vector<std::string> unmasked;  ///< eligible weights that were not 2:4 in the input (trained dense)
  int64_t parameters = 0;             ///< trained elements
  int64_t steps = 0;
  double seconds = 0;
};

/// The model input's shape for a batch of `batch` images of `data` (images are stored flat); Error when the
/// model does not take one float input that these images fit.
std::vector<int64_t> batch_shape(const engine::Graph& graph, const Dataset& data, int64_t batch);

/// The fixed masks of a pruned model, by weight name, in the weight's ONNX layout (1: trained, 0: stays 0):
/// every eligible weight whose groups are all 2:4 keeps exactly its nonzeros. Eligible weights that are not
/// 2:4 are listed in `unmasked`.
std::map<std::string, std::vector<uint8_t>> fixed_masks(const OnnxModel& model,
                                                        std::vector<std::string>* unmasked);

/// Trains `model` on `train` (shuffled mini-batches, seeded) and writes the trained parameters and
/// BatchNormalization statistics back into its initializers. Evaluates on `test` (may be null) after each
/// epoch. Throws Error when the model cannot be trained (naming the op and node) or the data does not fit it.
TrainReport train_model(OnnxModel& model, const Dataset& train, const Dataset* test,
                        const TrainOptions& options);

}  // namespace sparse24::train
