#include "train/optimizer.h"

#include <cmath>
#include <numbers>

#include "engine/ops/op_util.h"
#include "util/error.h"

namespace sparse24::train {

namespace {

void apply_mask(const ParamSlot& p, float* v) {
  if (p.keep.empty() || !v) return;
  for (int64_t i = 0; i < p.size; ++i)
    if (!p.keep[size_t(i)]) v[i] = 0.0f;
}

}  // namespace

Optimizer::Optimizer(const OptimizerOptions& options, std::vector<ParamSlot> params)
    : o_(options), params_(std::move(params)) {
  if (o_.kind != "sgd" && o_.kind != "adamw") fail("--optimizer must be sgd or adamw (got '{}')", o_.kind);
  if (o_.weight_decay < 0) fail("--weight-decay must be >= 0");
  if (o_.momentum < 0 || o_.momentum >= 1) fail("--momentum must be in [0, 1)");
  for (const ParamSlot& p : params_) {
    m_.emplace_back(size_t(p.size), 0.0f);
    v_.emplace_back(o_.kind == "adamw" ? size_t(p.size) : 0, 0.0f);
  }
}

void Optimizer::step(double lr, std::span<float* const> grads) {
  if (grads.size() != params_.size())
    fail("optimizer: {} gradients for {} parameters", grads.size(), params_.size());
  ++steps_;
  const float wd = float(o_.weight_decay);
  const double bias1 = 1.0 - std::pow(o_.beta1, double(steps_)),
               bias2 = 1.0 - std::pow(o_.beta2, double(steps_));
  for (size_t k = 0; k < params_.size(); ++k) {
    ParamSlot& p = params_[k];
    apply_mask(p, grads[k]);
    float* w = p.data;
    const float* g = grads[k];
    float* m = m_[k].data();
    float* v = v_[k].data();
    const int64_t n = p.size;
    const float decay = p.decay ? wd : 0.0f;
    if (o_.kind == "sgd") {
      const float mu = float(o_.momentum), rate = float(lr);
#pragma omp parallel for simd if (n >= engine::ops::kParallelMinElements)
      for (int64_t i = 0; i < n; ++i) {
        m[i] = mu * m[i] + g[i] + decay * w[i];
        w[i] -= rate * m[i];
      }
    } else {
      const float b1 = float(o_.beta1), b2 = float(o_.beta2), eps = float(o_.epsilon);
      const float step = float(lr / bias1), inv_sqrt_bias2 = float(1.0 / std::sqrt(bias2)),
                  shrink = float(lr) * decay;
#pragma omp parallel for simd if (n >= engine::ops::kParallelMinElements)
      for (int64_t i = 0; i < n; ++i) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        w[i] -= shrink * w[i];  // decoupled weight decay
        w[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_bias2 + eps);
      }
    }
    // The pruned positions stay exactly zero in every tensor the update touches.
    apply_mask(p, p.data);
    apply_mask(p, grads[k]);
    apply_mask(p, m);
    apply_mask(p, v_[k].empty() ? nullptr : v);
  }
}

void validate_schedule(const ScheduleOptions& s) {
  if (s.kind != "cosine" && s.kind != "step" && s.kind != "constant")
    fail("--schedule must be cosine, step or constant (got '{}')", s.kind);
  if (!(s.lr > 0)) fail("--lr must be > 0");
  if (s.warmup_epochs < 0) fail("--warmup-epochs must be >= 0");
  if (s.kind == "step" && s.step_epochs < 1) fail("--schedule step needs --step-epochs >= 1");
  if (!(s.gamma > 0)) fail("--step-gamma must be > 0");
}

double learning_rate(const ScheduleOptions& s, int64_t step, int64_t total, int64_t steps_per_epoch) {
  const double warmup = s.warmup_epochs * double(steps_per_epoch);
  if (warmup > 0 && double(step) < warmup) return s.lr * double(step + 1) / warmup;
  if (s.kind == "constant") return s.lr;
  if (s.kind == "step") return s.lr * std::pow(s.gamma, double(step / (steps_per_epoch * s.step_epochs)));
  const double span = std::max(1.0, double(total) - warmup);
  const double t = std::clamp((double(step) - warmup) / span, 0.0, 1.0);
  return s.lr * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
}

}  // namespace sparse24::train
