#pragma once
// Building a runnable model: import ONNX, optimize the graph, then pick each linear layer's tactic the way
// TensorRT does: time dense and 2:4 on this machine at the shapes the model will see, keep the faster.
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/optimize.h"
#include "graph/onnx_io.h"
#include "kernels/cpu/isa.h"

namespace sparse24::engine {

/// Whether 2:4 kernels may be used (as trtexec's --sparsity).
enum class SparsityMode : uint8_t {
  disable,  ///< dense everywhere
  enable,   ///< 2:4 where the weight is 2:4 and the kernel is faster, timed
  force,    ///< 2:4 wherever the weight is 2:4, untimed
};
/// Parses disable|enable|force; throws Error otherwise.
SparsityMode parse_sparsity(const std::string& s);
std::string_view sparsity_name(SparsityMode m);

/// Where the linear layers run.
enum class Device : uint8_t {
  cpu,   ///< dense-sgemm, dense-onednn, 2:4 (kernels/cpu)
  cuda,  ///< cuda-cublas, cuda-cusparselt, cuda-2:4 (engine/cuda_linear.h); the other ops stay on the CPU
};
/// Parses cpu|cuda; throws Error otherwise.
Device parse_device(const std::string& s);

/// How to plan.
struct PlanOptions {
  SparsityMode sparsity = SparsityMode::enable;
  Device device = Device::cpu;
  int threads = 0;      ///< 0: all cores
  int64_t batch = 1;    ///< the first symbolic input dimension
  int64_t seq = 128;    ///< every other symbolic input dimension
  int timing_reps = 9;  ///< runs per tactic when timing, at least
  /// and rounds until the layer's timing took this long, all its tactics together (a microsecond layer's
  /// nine runs are over before a VM's noise averages out)
  double timing_min_ms = 15;
};

/// The plan of one linear layer.
struct LayerPlan {
  std::string node, source_op;
  int64_t M = 0, N = 0, K = 0;
  bool is_24 = false;
  Tactic tactic = Tactic::dense_blas;        ///< the chosen tactic
  Tactic dense_tactic = Tactic::dense_blas;  ///< the faster dense tactic (what a dense-only run uses)
  double dense_ms = -1, sparse_ms = -1;      ///< timings that decided it (-1: not timed)
  /// The 2:4 kernel timed fastest at M, where the tactic is 2:4 and one was chosen (LinearLayer::
  /// set_sparse_kernel); empty: the dispatcher's choice (a Conv's patch kernel, --sparsity force).
  std::string sparse_kernel;
};

/// A model ready to run: the optimized graph with every tactic chosen.
struct CompiledModel {
  Graph graph;
  std::vector<LayerPlan> layers;
  OptimizeReport report;
  cpu::Isa isa = cpu::Isa::ref;  ///< the kernel level it was planned for
  SparsityMode sparsity = SparsityMode::enable;
  int64_t batch = 1, seq = 128;
};

/// Sets the threads of the one OpenMP team the ops, kernels, oneDNN and BLAS products use (0: all cores).
void set_threads(int threads);

/// Inputs for timing and benchmarks: declared shapes with symbolic dims set to batch (first) and seq
/// (others); floats in [0, 1), integers 1 (a valid token id, mask value and index).
std::map<std::string, Tensor> sample_inputs(const Graph& graph, int64_t batch, int64_t seq);

/// Imports, optimizes and plans a model.
CompiledModel compile(const OnnxModel& model, const PlanOptions& options);

/// Re-plans the tactics of an already compiled model.
void plan_tactics(CompiledModel& model, const PlanOptions& options);

/// Sets every linear layer to its planned dense tactic (dense = true) or back to its chosen tactic.
void use_dense_tactics(CompiledModel& model, bool dense);

}  // namespace sparse24::engine
