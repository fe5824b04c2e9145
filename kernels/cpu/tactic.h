#pragma once
// Dense or 2:4 for one layer and one M, decided by timing both on this machine. The engine calls this once
// per layer when it builds a plan; a shape where the 2:4 kernel loses here (large M, some thread counts)
// then runs the dense library instead, so no slower kernel is ever chosen.
#include <functional>

#include "kernels/cpu/spmm24.h"

namespace sparse24::cpu {

/// The two ways to run one product.
enum class Tactic : uint8_t { sparse24, dense };

/// What time_tactic measured and chose.
struct TacticChoice {
  Tactic tactic = Tactic::sparse24;      ///< the faster one
  const Spmm24Kernel* kernel = nullptr;  ///< the 2:4 kernel the dispatcher uses for this M
  double sparse_ms = 0.0;                ///< median time of the 2:4 kernel
  double dense_ms = 0.0;                 ///< median time of `run_dense`
};

/// Times the dispatcher's 2:4 kernel on `args` (on `threads` threads) against `run_dense`, a callable that
/// computes the same product with the dense weight, `repeats` times each after one warm-up call, and picks
/// the lower median. Both write their outputs; the caller owns the buffers. Throws Error for bad arguments.
TacticChoice time_tactic(const Spmm24Args& args, int threads, const std::function<void()>& run_dense,
                         int repeats = 5);

}  // namespace sparse24::cpu
