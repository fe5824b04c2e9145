#include "engine/planner.h"

#include <omp.h>

#include <chrono>
#include <map>
#include <random>

#include "util/error.h"

namespace sparse24::engine {

SparsityMode parse_sparsity(const std::string& s) {
  if (s == "disable") return SparsityMode::disable;
  if (s == "enable") return SparsityMode::enable;
  if (s == "force") return SparsityMode::force;
  fail("--sparsity must be disable, enable or force (got '{}')", s);
}

std::string_view sparsity_name(SparsityMode m) {
  return m == SparsityMode::disable ? "disable" : m == SparsityMode::enable ? "enable" : "force";
}

void set_threads(int threads) {
  int t = threads > 0 ? threads : omp_get_num_procs();
  omp_set_num_threads(t);  // OpenBLAS stays single-threaded: ops::blas_sgemm splits products over this team
}

std::map<std::string, Tensor> sample_inputs(const Graph& graph, int64_t batch, int64_t seq) {
  std::map<std::string, Tensor> inputs;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  for (ValueId id : graph.inputs) {
    const Value& v = graph.values[size_t(id)];
    std::vector<int64_t> shape = v.declared_shape;
    for (size_t i = 0; i < shape.size(); ++i)
      if (shape[i] < 0) shape[i] = i == 0 ? batch : seq;
    Tensor t(v.declared_dtype.value_or(DType::f32), shape);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.set(i,
            t.dtype() == DType::f32 || t.dtype() == DType::f16 || t.dtype() == DType::bf16 ? uni(rng) : 1.0f);
    inputs[v.name] = std::move(t);
  }
  return inputs;
}

namespace {

// Median times of a layer's tactics, timed in alternation: every round runs each tactic once, so a change
// in the machine's state (on a shared VM the second vCPU and the memory bandwidth come and go) hits them all
// alike, where timing one tactic's runs after another's handed the slower one the lucky moment. Rounds go on
// until each tactic ran `reps` times and the timed rounds took `min_ms` (at most kMaxTimingRounds): with
// nine rounds alone, the CNN's 25 us convolutions at batch 1 went to oneDNN in one plan in two, 2:4 then
// timing 0.027-0.039 ms against its 0.025 in the run. `run` runs the layer once with whatever tactic is
// set; untimed rounds first, for a millisecond at least, prepare each tactic's weights and primitives and
// wake the threads.
constexpr int kMaxTimingRounds = 2000;

// One candidate of a layer's timing: a tactic and, for 2:4, the kernel (null: the dispatcher's) at M rows.
struct Candidate {
  Tactic tactic;
  const cpu::Spmm24Kernel* kernel = nullptr;
};

void apply(LinearLayer& l, const Candidate& c, int64_t M) {
  l.set_tactic(c.tactic);
  if (c.tactic == Tactic::sparse24_cpu) l.set_sparse_kernel(c.kernel, M);
}

template <typename Run>
std::vector<double> time_tactics(LinearLayer& l, int64_t M, const std::vector<Candidate>& candidates,
                                 int reps, double min_ms, Run&& run) {
  using Clock = std::chrono::steady_clock;
  const auto since = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  const Candidate saved{l.tactic(), l.sparse_kernel()};
  const int64_t saved_m = l.sparse_kernel_m();
  for (const auto warm = Clock::now(); since(warm) < 1.0;)
    for (const Candidate& c : candidates) {
      apply(l, c, M);
      run();
    }
  std::vector<std::vector<double>> ms(candidates.size());
  const auto start = Clock::now();
  for (int r = 0; r < kMaxTimingRounds && (r < reps || since(start) < min_ms); ++r)
    for (size_t i = 0; i < candidates.size(); ++i) {
      apply(l, candidates[i], M);
      const auto t0 = Clock::now();
      run();
      ms[i].push_back(since(t0));
    }
  l.set_tactic(saved.tactic);
  l.set_sparse_kernel(saved.kernel, saved_m);
  std::vector<double> median;
  for (auto& v : ms) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    median.push_back(v[v.size() / 2]);
  }
  return median;
}

// Which of a 2:4 layer's kernels to keep at M, once 2:4 beat dense. The kernels are timed again among
// themselves: in the rounds with the dense tactics each run found its weights evicted by a dense one, while
// in a model a layer's packed weights stay where the last inference left them. Timed that way the MLP's
// 1024x784 layer at batch 1 ran 10% faster on the GEMM kernel (its GEMV tail, four tiles at a time), but the
// MLP with its layers on the GEMM kernel took 0.024-0.025 ms against 0.020 on the GEMV kernel; among
// themselves the two kernels measured within 3%. The dispatcher's kernel stays unless another is faster by
// kKernelMargin, so timing noise does not swap kernels that are equal.
constexpr double kKernelMargin = 0.95;

template <typename Run>
const cpu::Spmm24Kernel* fastest_kernel(LinearLayer& l, int64_t M, const std::vector<Candidate>& kernels,
                                        const PlanOptions& o, Run&& run) {
  const std::vector<double> ms = time_tactics(l, M, kernels, o.timing_reps, o.timing_min_ms, run);
  const cpu::Spmm24Kernel* dispatched = l.dispatched_kernel(M);
  size_t best = 0;
  double base = -1;
  for (size_t t = 0; t < kernels.size(); ++t) {
    if (ms[t] < ms[best]) best = t;
    if (kernels[t].kernel == dispatched) base = ms[t];
  }
  if (base >= 0 && ms[best] >= kKernelMargin * base) return dispatched;
  return kernels[best].kernel;
}

// --device cuda: cuBLAS is the dense tactic; the 2:4 ones are sparse24's mma.sp kernel and cuSPARSELt (when
// the library loads), timed like the CPU tactics (host time of a call, transfers included).
template <typename TimeOf>
void plan_cuda_layer(LayerPlan& p, LinearLayer& l, SparsityMode sparsity, int64_t M, TimeOf&& time_of) {
  p.dense_tactic = Tactic::cuda_cublas;
  p.tactic = Tactic::cuda_cublas;
  if (M > 0) p.dense_ms = time_of(Tactic::cuda_cublas);
  if (!l.is_24() || sparsity == SparsityMode::disable) return;
  if (sparsity == SparsityMode::force || M == 0) {
    p.tactic = Tactic::cuda_sp24;
    return;
  }
  for (Tactic t : {Tactic::cuda_sp24, Tactic::cuda_cusparselt}) {
    double ms = -1;
    try {
      ms = time_of(t);
    } catch (const Error&) {  // cuSPARSELt not installed, or a shape its kernel refuses: not a candidate
      continue;
    }
    if (p.sparse_ms < 0 || ms < p.sparse_ms) {
      p.sparse_ms = ms;
      if (ms < p.dense_ms) p.tactic = t;
    }
  }
}

}  // namespace

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu;
  if (s == "cuda") return Device::cuda;
  fail("--device must be cpu or cuda, got '{}'", s);
}

void plan_tactics(CompiledModel& model, const PlanOptions& o) {
  if (o.device == Device::cuda)
    if (std::string why = cuda_unavailable_reason(); !why.empty()) fail("--device cuda: {}", why);
  set_threads(o.threads);
  model.sparsity = o.sparsity;
  model.batch = o.batch;
  model.seq = o.seq;
  model.isa = cpu::active_isa();
  // Every layer starts dense; one run at the planned shapes tells each layer its M (and keeps each Conv's
  // input, since a Conv's tactics differ in more than the GEMM and are timed as whole nodes).
  std::vector<int64_t> M(model.graph.nodes.size(), 0);
  std::map<size_t, Tensor> conv_inputs;
  for (Node& n : model.graph.nodes)
    if (LinearLayer* l = linear_layer(n)) l->set_tactic(Tactic::dense_blas);
  Executor probe(model.graph);
  probe.run(sample_inputs(model.graph, o.batch, o.seq),
            [&](size_t i, std::span<const Tensor* const> in, std::span<const Tensor> out, double) {
              const Node& n = model.graph.nodes[i];
              if (LinearLayer* l = linear_layer(n)) {
                // Rows of the GEMM; a Conv's from its shape (batch · output pixels), before any fused pool.
                M[i] = out[0].numel() / l->N();
                if (const auto* conv = dynamic_cast<const ConvLinearNode*>(n.state.get())) {
                  const ops::ConvShape shape = conv->shape_for(n, *in[0]);
                  M[i] = shape.batch * shape.out_pixels();
                  conv_inputs[i] = *in[0];
                }
              }
            });
  model.layers.clear();
  for (size_t i = 0; i < model.graph.nodes.size(); ++i) {
    Node& n = model.graph.nodes[i];
    LinearLayer* l = linear_layer(n);
    if (!l) continue;
    LayerPlan p;
    p.node = n.name;
    p.source_op = static_cast<const LinearNode&>(*n.state).source_op;
    p.M = M[i], p.N = l->N(), p.K = l->K();
    p.is_24 = l->is_24();
    // One run of the layer with whatever tactic is set: the GEMM alone at M for a linear node (on scratch
    // data), the whole node for a Conv (its tactics differ in more than the GEMM).
    const auto conv_input = conv_inputs.find(i);
    const std::vector<float> X(conv_input == conv_inputs.end() ? size_t(M[i] * l->K()) : 0, 0.5f);
    std::vector<float> Y(conv_input == conv_inputs.end() ? size_t(M[i] * l->N()) : 0);
    const Tensor* in[1] = {conv_input == conv_inputs.end() ? nullptr : &conv_input->second};
    Tensor out[1];
    auto run_once = [&] {
      if (in[0])
        n.state->run(n, in, out);
      else
        l->run(M[i], X.data(), l->K(), Y.data(), l->N());
    };
    if (o.device == Device::cuda) {
      plan_cuda_layer(p, *l, o.sparsity, M[i], [&](Tactic t) {
        return time_tactics(*l, M[i], {Candidate{t}}, o.timing_reps, o.timing_min_ms, run_once)[0];
      });
      l->set_tactic(p.tactic);
      model.layers.push_back(p);
      continue;
    }
    // The dense tactic is the fastest of sgemm, oneDNN (matmul; for a Conv, its convolution) and, for a
    // short-K Conv, the direct kernel. With --sparsity enable every 2:4 kernel of the active ISA for f32
    // weights (the GEMV and the GEMM kernel) is timed in the same rounds, as TensorRT times every tactic;
    // a Conv that reads its patches in place has its patch kernel only.
    const auto* conv = dynamic_cast<const ConvLinearNode*>(n.state.get());
    std::vector<Candidate> candidates = {{Tactic::dense_blas}, {Tactic::dense_onednn}};
    if (conv && conv->supports_direct(n)) candidates.push_back({Tactic::dense_direct});
    const size_t dense = candidates.size();
    const bool time_sparse = l->is_24() && o.sparsity == SparsityMode::enable;
    if (time_sparse) {
      if (conv && cpu::choose_spmm24_patch_kernel(DType::f32, cpu::active_isa()))
        candidates.push_back({Tactic::sparse24_cpu});
      else
        for (const cpu::Spmm24Kernel& k : cpu::spmm24_kernels())
          if (k.weight_dtype == DType::f32 && k.isa == cpu::active_isa())
            candidates.push_back({Tactic::sparse24_cpu, &k});
    }
    p.dense_tactic = Tactic::dense_blas;
    if (M[i] > 0) {
      const std::vector<double> ms =
          time_tactics(*l, M[i], candidates, o.timing_reps, o.timing_min_ms, run_once);
      p.dense_ms = ms[0];
      for (size_t t = 1; t < dense; ++t)
        if (ms[t] < p.dense_ms) {
          p.dense_tactic = candidates[t].tactic;
          p.dense_ms = ms[t];
        }
      for (size_t t = dense; t < candidates.size(); ++t)
        if (p.sparse_ms < 0 || ms[t] < p.sparse_ms) p.sparse_ms = ms[t];
    }
    p.tactic = p.dense_tactic;
    if (l->is_24() && o.sparsity == SparsityMode::force)
      p.tactic = Tactic::sparse24_cpu;
    else if (time_sparse && M[i] > 0 && p.sparse_ms < p.dense_ms)
      p.tactic = Tactic::sparse24_cpu;
    l->set_tactic(p.tactic);
    l->set_sparse_kernel(nullptr, 0);
    if (p.tactic == Tactic::sparse24_cpu && time_sparse && M[i] > 0 && candidates.size() > dense + 1) {
      const std::vector<Candidate> kernels(candidates.begin() + std::ptrdiff_t(dense), candidates.end());
      l->set_sparse_kernel(fastest_kernel(*l, M[i], kernels, o, run_once), M[i]);
      p.sparse_kernel = l->sparse_kernel()->name;
    }
    model.layers.push_back(p);
  }
}

void use_dense_tactics(CompiledModel& model, bool dense) {
  size_t li = 0;
  for (Node& n : model.graph.nodes)
    if (LinearLayer* l = linear_layer(n)) {
      const LayerPlan& p = model.layers.at(li++);
      l->set_tactic(dense ? p.dense_tactic : p.tactic);
    }
}

CompiledModel compile(const OnnxModel& onnx_model, const PlanOptions& options) {
  CompiledModel m;
  m.graph = import_onnx(onnx_model);
  m.report = optimize(m.graph);
  plan_tactics(m, options);
  return m;
}

}  // namespace sparse24::engine
