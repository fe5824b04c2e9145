#pragma once
// Optimizers (SGD with momentum, AdamW), the learning-rate schedule, and the fixed 2:4 masks of ASP-style
// retraining: after every step the pruned positions of a weight, its gradient and its optimizer state are
// exactly zero.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace sparse24::train {

/// Optimizer settings.
struct OptimizerOptions {
  std::string kind = "sgd";  ///< sgd (momentum, L2 weight decay) or adamw (decoupled weight decay)
  double momentum = 0.9;     ///< SGD
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;  ///< AdamW
  double weight_decay = 5e-4;  ///< applied to weights (rank >= 2), not to biases and normalisation parameters
};

/// One trained tensor as the optimizer sees it.
struct ParamSlot {
  std::string name;
  float* data = nullptr;
  int64_t size = 0;
  bool decay = false;
  std::vector<uint8_t> keep;  ///< fixed mask (1: trained, 0: pruned, stays exactly zero); empty: dense
};

/// SGD with momentum or AdamW over a fixed set of parameters.
class Optimizer {
 public:
  /// Throws Error for an unknown kind or invalid hyper-parameters.
  Optimizer(const OptimizerOptions& options, std::vector<ParamSlot> params);
  /// One update with learning rate `lr` from `grads` (one per slot, same size). Masked slots: gradient,
  /// weight and state are zeroed at the pruned positions, before and after the update.
  void step(double lr, std::span<float* const> grads);
  const std::vector<ParamSlot>& params() const { return params_; }
  /// Optimizer state of slot i (momentum for SGD; first then second moment for AdamW).
  const std::vector<float>& state(size_t i, int which = 0) const { return which == 0 ? m_[i] : v_[i]; }

 private:
  OptimizerOptions o_;
  std::vector<ParamSlot> params_;
  std::vector<std::vector<float>> m_, v_;
  int64_t steps_ = 0;
};

/// Learning rate per step.
struct ScheduleOptions {
  std::string kind = "cosine";  ///< cosine (to 0 at the end), step (times gamma every step_epochs), constant
  double lr = 0.05;
  double warmup_epochs = 0;  ///< linear ramp from 0 over this many epochs
  int step_epochs = 0;
  double gamma = 0.1;
};

/// Throws Error for an unknown kind or invalid settings.
void validate_schedule(const ScheduleOptions& s);
/// The learning rate at `step` (0-based) of `total` steps, `steps_per_epoch` per epoch.
double learning_rate(const ScheduleOptions& s, int64_t step, int64_t total, int64_t steps_per_epoch);

}  // namespace sparse24::train
