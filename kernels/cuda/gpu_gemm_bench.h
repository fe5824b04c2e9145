#pragma once
// cuBLAS (dense), cuSPARSELt (2:4) and sparse24's mma.sp kernels (2:4) side by side on one GPU, in one run:
// kernel time from CUDA events, host time per call from the wall clock. The CLI's
// `sparse24 bench gemm --device cuda` and the standalone gpu_bench both call run_gpu_gemm_bench.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "format/dtype.h"

namespace sparse24::cuda {

struct GpuGemmBenchRow;

/// What to measure.
struct GpuGemmBenchOptions {
  std::vector<std::pair<int64_t, int64_t>> shapes;  ///< weight shapes (N, K)
  std::vector<int64_t> ms;                          ///< activation rows M
  std::vector<DType> dtypes;                        ///< f16, bf16, i8 (outputs: f16, bf16, i32)
  bool cusparselt = true;   ///< false: leave cuSPARSELt out (rows are still written for sparse24)
  bool cold_l2 = true;      ///< flush L2 before every timed call, as when other layers ran in between
  double target_ms = 25.0;  ///< kernel time each measurement aims to accumulate
  int min_iters = 3, max_iters = 200;
  std::function<void(const std::string&)> log;         ///< one line per measured configuration (may be empty)
  std::function<void(const GpuGemmBenchRow&)> on_row;  ///< each row as soon as it is measured (may be empty)
};

/// One sparse library against the dense baseline on one problem.
struct GpuGemmBenchRow {
  int64_t m = 0, n = 0, k = 0;
  std::string dtype;  ///< operand type
  std::string dense_lib = "cublas";
  double dense_ms = 0;                ///< kernel time per call (CUDA events)
  double dense_host_overhead_us = 0;  ///< wall time per call spent on the host to enqueue it
  std::string sparse_lib;             ///< "cusparselt" or "sparse24"
  std::string sparse_kernel;          ///< sparse24: "small_m" or "large_m"; cuSPARSELt: "searched"
  double sparse_ms = 0;
  double host_overhead_us = 0;  ///< the sparse library's host time per call
  double ratio = 0;             ///< dense_ms / sparse_ms (> 1: the 2:4 product is faster)
  double dense_tflops = 0;      ///< effective: 2·M·N·K / dense time
  double sparse_tflops = 0;     ///< effective: 2·M·N·K / sparse time (the 2:4 product does half the math)
  double sparse_weight_gbps = 0;     ///< compressed weight bytes (values + metadata) / sparse time: the
                                     ///< bound that matters at small M, against the GPU's memory bandwidth
  double max_rel_diff_vs_dense = 0;  ///< on the first rows of Y: max |sparse - dense| / max(1, max |dense|)
  std::string error;                 ///< non-empty when this library failed here (times are then 0)
};

/// Shapes (N, K) from issue 6: MiniLM, BERT-base, LLaMA-7B-like, 8192², 14336x4096.
std::vector<std::pair<int64_t, int64_t>> gpu_bench_model_shapes();
/// M values from issue 6: 1, 16, 64, 128, 1024, 4096, 16384.
std::vector<int64_t> gpu_bench_model_ms();

/// Runs every (dtype, shape, M) and returns two rows per problem (cuSPARSELt, sparse24). Throws Error when
/// there is no CUDA device or cuBLAS cannot start; a sparse library failing on one problem is reported in
/// that row's `error`.
std::vector<GpuGemmBenchRow> run_gpu_gemm_bench(const GpuGemmBenchOptions& options);

/// The rows as a JSON array of objects (keys as the struct fields).
std::string gpu_gemm_bench_json(const std::vector<GpuGemmBenchRow>& rows);

}  // namespace sparse24::cuda
