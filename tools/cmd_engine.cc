// sparse24 build / run / bench: the inference engine from the command line.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <regex>

#include "engine/plan_file.h"
#include "format/npy.h"
#include "tools/cli_util.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace sparse24::cli {

namespace {

namespace fs = std::filesystem;
using namespace sparse24::engine;

// Options every engine command shares.
struct EngineArgs {
  std::string model;
  std::string sparsity = "enable";
  std::string device = "cpu";
  int threads = 0;
  int64_t batch = 1, seq = 128;
  PlanOptions plan() const {
    PlanOptions o;
    o.sparsity = parse_sparsity(sparsity);
    o.device = parse_device(device);
    o.threads = threads;
    o.batch = batch;
    o.seq = seq;
    if (batch < 1 || seq < 1) fail("--batch and --seq must be at least 1");
    if (threads < 0) fail("--threads must be >= 0");
    return o;
  }
};

void add_engine_options(CLI::App* cmd, EngineArgs& a, bool planning, bool model_required = true) {
  cmd->add_option("model", a.model, "ONNX model (.onnx) or a plan from `sparse24 build` (.plan)")
      ->required(model_required);
  cmd->add_option("--threads", a.threads, "threads (0: every core)")->capture_default_str();
  if (!planning) return;
  cmd->add_option(
         "--sparsity", a.sparsity,
         "disable: dense only; enable: 2:4 where timed faster; force: 2:4 wherever the weight is 2:4")
      ->capture_default_str();
  cmd->add_option("--device", a.device,
                  "cpu, or cuda: linear layers on the GPU (cuBLAS / cuSPARSELt / sparse24 mma.sp, bf16), the "
                  "other ops on the CPU")
      ->capture_default_str();
  cmd->add_option("--batch", a.batch, "batch size the layers are timed at (first symbolic input dim)")
      ->capture_default_str();
  cmd->add_option("--seq", a.seq, "sequence length the layers are timed at (other symbolic input dims)")
      ->capture_default_str();
}

std::string fmt_ms(double ms) {
  return ms < 0 ? "-" : fmt::format("{:.3f}", ms);
}

void print_layers(const CompiledModel& m) {
  Table t({"layer", "op", "M x N x K", "2:4 weight", "best dense ms", "2:4 ms", "tactic", "2:4 kernel"});
  int sparse = 0;
  for (const LayerPlan& p : m.layers) {
    sparse += !is_dense(p.tactic);
    t.add({p.node, p.source_op, fmt::format("{} x {} x {}", p.M, p.N, p.K), p.is_24 ? "yes" : "no",
           fmt_ms(p.dense_ms), fmt_ms(p.sparse_ms), std::string(tactic_name(p.tactic)),
           p.sparse_kernel.empty() ? "-" : p.sparse_kernel});
  }
  t.add_footer({fmt::format("{} linear layers", m.layers.size()), "", "", "", "", "",
                fmt::format("{} on 2:4", sparse), ""});
  t.print();
}

// --- build -----------------------------------------------------------------------------------------------

struct BuildArgs : EngineArgs {
  std::string output;
};

void run_build(const BuildArgs& a) {
  PlanOptions o = a.plan();
  check_output_path(a.model, a.output);
  if (is_plan_file(a.model)) fail("'{}' is already a plan: build takes an ONNX model", a.model);
  CompiledModel m = compile(load_onnx(a.model), o);
  save_plan(m, a.output);
  fmt::print("{} -> {} (ISA {}, sparsity {}, timed at batch {} seq {})\n", a.model, a.output,
             cpu::isa_name(m.isa), sparsity_name(m.sparsity), m.batch, m.seq);
  fmt::print(
      "graph: {} nodes after folding {} constants and {} BatchNormalizations, {} layers lowered, "
      "{} bias and {} activations fused, {} attention blocks fused, {} Add+LayerNormalization fused, {} "
      "convolutions channels-last, {} residual Adds fused, {} Conv+MaxPool fused, {} "
      "Conv+GlobalAveragePool fused\n",
      m.graph.nodes.size(), m.report.folded_constants, m.report.folded_batchnorms, m.report.lowered,
      m.report.fused_bias, m.report.fused_activations, m.report.fused_attention,
      m.report.fused_add_layer_norm, m.report.channels_last_convs, m.report.fused_residuals,
      m.report.fused_pools, m.report.fused_global_pools);
  print_layers(m);
}

// --- run -------------------------------------------------------------------------------------------------

struct RunArgs : EngineArgs {
  std::vector<std::string> inputs;
  std::string out_dir;
};

void run_run(const RunArgs& a) {
  std::map<std::string, Tensor> inputs;
  for (const std::string& spec : a.inputs) {
    auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      fail("--input must be NAME=FILE.npy (got '{}')", spec);
    std::string name = spec.substr(0, eq);
    if (inputs.count(name)) fail("--input '{}' given twice", name);
    inputs[name] = read_npy(spec.substr(eq + 1)).to_tensor();
  }
  fs::path dir(a.out_dir);
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    fail("-o '{}' exists and is not a folder", a.out_dir);
  CompiledModel m = load_model(a.model, a.plan());
  Executor exec(std::move(m.graph));
  std::vector<Tensor> outs = exec.run(inputs);
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create folder '{}': {}", a.out_dir, ec.message());
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string name = exec.graph().values[size_t(exec.graph().outputs[i])].name;
    std::string file = std::regex_replace(name, std::regex("[^A-Za-z0-9_.-]"), "_") + ".npy";
    write_npy(dir / file, outs[i]);
    fmt::print("{}: {} {} -> {}\n", name, dtype_name(outs[i].dtype()), shape_str(outs[i].shape()),
               (dir / file).string());
  }
}

// --- bench -----------------------------------------------------------------------------------------------

struct BenchArgs : EngineArgs {
  std::string json;
  int iters = 0;
  int warmup = 3;
};

struct Latency {
  double median = 0, p90 = 0, p99 = 0, mean = 0;
  int iters = 0;
};

Latency latency_of(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, size_t(p * double(ms.size() - 1) + 0.5))]; };
  Latency l{pct(0.5), pct(0.9), pct(0.99), 0, int(ms.size())};
  for (double v : ms) l.mean += v / double(ms.size());
  return l;
}

// The model as planned and the same graph with every layer dense, measured in turns of about 50 ms each
// (a block of runs of one, then of the other, and again), so that a change in the machine's state during
// the measurement (on a shared VM the second vCPU and the memory bandwidth come and go) hits both alike,
// as in the planner: timed one after the other, the second could get a quiet second the first did not.
// Blocks rather than single runs keep each model's weights in cache as in steady use. `run(dense,
// observer)` runs the model once with the tactics of either and returns its milliseconds. Without
// --iters: at least 10 runs each, then on for about 4 seconds in all or until each has 2000.
template <typename Run>
std::pair<Latency, Latency> measure_both(int warmup, int iters, Run&& run) {
  double warm_ms = 1e-3;
  for (int i = 0; i < std::max(warmup, 1); ++i) warm_ms = std::max(run(false, nullptr), run(true, nullptr));
  const int block = std::clamp(int(50.0 / warm_ms), 1, 500), cap = iters > 0 ? iters : 2000;
  std::vector<double> ms[2];
  const auto start = std::chrono::steady_clock::now();
  while (int(ms[1].size()) < cap && (iters > 0 || ms[1].size() < 10 ||
                                     std::chrono::steady_clock::now() - start < std::chrono::seconds(4)))
    for (int dense = 0; dense < 2; ++dense)
      for (int r = 0; r < block && int(ms[dense].size()) < cap; ++r)
        ms[dense].push_back(run(dense == 1, nullptr));
  return {latency_of(std::move(ms[0])), latency_of(std::move(ms[1]))};
}

// Median time per node of both, over profiled runs (about 0.5 s each, 5 to 50 runs) in two turns each as
// above: robust to the odd slow run.
template <typename Run>
std::pair<std::vector<double>, std::vector<double>> profile_both(size_t nodes, double run_ms, Run&& run) {
  const int runs = int(std::clamp(500.0 / std::max(run_ms, 1e-3), 5.0, 50.0));
  std::vector<std::vector<double>> t[2] = {std::vector<std::vector<double>>(nodes),
                                           std::vector<std::vector<double>>(nodes)};
  for (int turn = 0; turn < 2; ++turn)
    for (int dense = 0; dense < 2; ++dense)
      for (int r = turn * runs / 2; r < (turn + 1) * runs / 2; ++r)
        run(dense == 1, [&](size_t i, auto, auto, double ms) { t[dense][i].push_back(ms); });
  std::vector<double> median[2] = {std::vector<double>(nodes), std::vector<double>(nodes)};
  for (int d = 0; d < 2; ++d)
    for (size_t i = 0; i < nodes; ++i) {
      const size_t n = t[d][i].size();
      std::nth_element(t[d][i].begin(), t[d][i].begin() + n / 2, t[d][i].end());
      median[d][i] = t[d][i][n / 2];
    }
  return {std::move(median[0]), std::move(median[1])};
}

void run_bench(const BenchArgs& a) {
  PlanOptions o = a.plan();
  CompiledModel m = load_model(a.model, o);
  auto inputs = sample_inputs(m.graph, o.batch, o.seq);

  // One executor; the layers' tactics switch between the runs (outside the timed part).
  Executor exec(m.graph);
  const auto run = [&](bool dense, const NodeObserver& observer) {
    use_dense_tactics(m, dense);
    const auto t0 = std::chrono::steady_clock::now();
    exec.run(inputs, observer);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  const auto [sp, dn] = measure_both(a.warmup, a.iters, run);
  const auto [sp_prof, dn_prof] = profile_both(m.graph.nodes.size(), std::max(sp.median, dn.median), run);
  use_dense_tactics(m, false);

  fmt::print("{}: batch {}, seq {}, threads {}, ISA {}, sparsity {}\n", a.model, o.batch, o.seq,
             o.threads ? o.threads : omp_get_num_procs(), cpu::isa_name(m.isa), sparsity_name(m.sparsity));
  Table lat({"model", "median ms", "p90 ms", "p99 ms", "throughput /s", "runs"});
  auto row = [&](const char* name, const Latency& l) {
    lat.add({name, fmt::format("{:.3f}", l.median), fmt::format("{:.3f}", l.p90),
             fmt::format("{:.3f}", l.p99), fmt::format("{:.1f}", double(o.batch) * 1000.0 / l.median),
             std::to_string(l.iters)});
  };
  row("dense", dn);
  row("2:4 (planned)", sp);
  lat.print();
  fmt::print("speedup 2:4 vs dense: {:.2f}x\n\n", dn.median / sp.median);

  Table prof({"node", "op", "planned tactic", "2:4 kernel", "dense ms", "planned ms"});
  nlohmann::json rows = nlohmann::json::array();
  std::map<std::string, std::pair<double, double>> other;  // op -> (dense, planned) for non-linear nodes
  for (size_t i = 0; i < m.graph.nodes.size(); ++i) {
    const Node& n = m.graph.nodes[i];
    LinearLayer* l = linear_layer(n);
    std::string op = l ? static_cast<const LinearNode&>(*n.state).source_op : n.op;
    std::string tactic = l ? std::string(tactic_name(l->tactic())) : "-";
    // The kernel the planner pinned to the layer's M (empty: the dispatcher's, or not 2:4).
    std::string kernel = l && l->sparse_kernel() ? l->sparse_kernel()->name : "";
    rows.push_back({{"node", n.name},
                    {"op", op},
                    {"tactic", tactic},
                    {"kernel", kernel},
                    {"dense_ms", dn_prof[i]},
                    {"planned_ms", sp_prof[i]}});
    if (l) {
      prof.add({n.name, op, tactic, kernel.empty() ? "-" : kernel, fmt::format("{:.3f}", dn_prof[i]),
                fmt::format("{:.3f}", sp_prof[i])});
    } else {
      other[op].first += dn_prof[i];
      other[op].second += sp_prof[i];
    }
  }
  for (const auto& [op, t] : other)
    prof.add({fmt::format("(all {})", op), op, "-", "-", fmt::format("{:.3f}", t.first),
              fmt::format("{:.3f}", t.second)});
  prof.print();

  if (!a.json.empty()) {
    auto lj = [](const Latency& l) {
      return nlohmann::json{{"median_ms", l.median},
                            {"p90_ms", l.p90},
                            {"p99_ms", l.p99},
                            {"mean_ms", l.mean},
                            {"runs", l.iters}};
    };
    nlohmann::json j = {{"model", a.model},
                        {"batch", o.batch},
                        {"seq", o.seq},
                        {"threads", o.threads ? o.threads : omp_get_num_procs()},
                        {"isa", cpu::isa_name(m.isa)},
                        {"sparsity", sparsity_name(m.sparsity)},
                        {"median_ms", sp.median},
                        {"p90_ms", sp.p90},
                        {"p99_ms", sp.p99},
                        {"throughput_per_s", double(o.batch) * 1000.0 / sp.median},
                        {"dense", lj(dn)},
                        {"planned", lj(sp)},
                        {"speedup", dn.median / sp.median},
                        {"layers", rows}};
    write_json(a.json, j);
  }
}

}  // namespace

void add_engine_commands(CLI::App& app) {
  auto b = std::make_shared<BuildArgs>();
  CLI::App* build = app.add_subcommand(
      "build",
      "Optimize an ONNX model, time dense vs 2:4 for every layer on this machine, and save the plan.");
  add_engine_options(build, *b, true);
  build->add_option("-o,--output", b->output, "where to write the plan (.plan)")->required();
  build->callback([b] { run_build(*b); });

  auto r = std::make_shared<RunArgs>();
  CLI::App* run =
      app.add_subcommand("run", "Run a model on .npy inputs and write each output as DIR/<name>.npy.");
  add_engine_options(run, *r, true);
  run->add_option("--input", r->inputs, "NAME=FILE.npy, once per model input")->required();
  run->add_option("-o,--output", r->out_dir, "folder for the outputs (created if missing)")->required();
  run->callback([r] { run_run(*r); });

  auto s = std::make_shared<BenchArgs>();
  CLI::App* bench = app.add_subcommand(
      "bench",
      "Latency (median, p90, p99), throughput and a per-layer profile of a model, dense and 2:4 side by side "
      "(`bench gemm`: the kernels alone).");
  add_engine_options(bench, *s, true, false);
  bench->add_option("--json", s->json, "also write the results as JSON");
  bench->add_option("--iters", s->iters, "timed runs (0: at least 10 and about 2 seconds)")
      ->capture_default_str();
  bench->add_option("--warmup", s->warmup, "untimed runs first")->capture_default_str();
  bench->callback([s, bench] {
    if (!bench->get_subcommands().empty()) return;  // `bench gemm` ran instead
    if (s->model.empty()) fail("bench needs a MODEL (.onnx or .plan), or use `sparse24 bench gemm`");
    run_bench(*s);
  });
}

}  // namespace sparse24::cli
