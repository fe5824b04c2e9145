#include "kernels/cpu/tactic.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "util/error.h"

namespace sparse24::cpu {

namespace {

double median_ms(const std::function<void()>& f, int repeats) {
  f();  // warm-up: first-touch of outputs, code and caches
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

TacticChoice time_tactic(const Spmm24Args& args, int threads, const std::function<void()>& run_dense,
                         int repeats) {
  if (repeats < 1) fail("time_tactic: repeats must be at least 1, got {}", repeats);
  if (!run_dense) fail("time_tactic: no dense runner given");
  if (!args.W) fail("time_tactic: no weight given");
  TacticChoice c;
  c.kernel = &choose_spmm24_kernel(args.W->dtype, args.M, active_isa());
  c.sparse_ms = median_ms([&] { spmm24_run(*c.kernel, args, threads); }, repeats);
  c.dense_ms = median_ms(run_dense, repeats);
  c.tactic = c.dense_ms < c.sparse_ms ? Tactic::dense : Tactic::sparse24;
  return c;
}

}  // namespace sparse24::cpu
