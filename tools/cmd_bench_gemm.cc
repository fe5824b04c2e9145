// `sparse24 bench gemm`: the 2:4 CPU kernels against dense OpenBLAS and dense oneDNN, in one process, on the
// same data. Weights are cold: every timed call reads the next of enough copies to overflow the last-level
// cache. Each time is the median of the repeats; ratio = best dense time / sparse time.
#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <tuple>

#include "format/pattern24.h"
#include "kernels/cpu/spmm24.h"
#ifdef SPARSE24_WITH_CUDA
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gpu_gemm_bench.h"
#endif
#include "tools/cli_util.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/parse_int.h"

namespace sparse24::cli {
namespace {

constexpr const char* kDefaultShapes =
    "384x384,1536x384,384x1536,768x768,3072x768,768x3072,4096x4096,11008x4096,4096x11008";

struct BenchOptions {
  std::string device = "cpu";
  std::string m = "1,8,32,128,512,2048";
  std::string shapes = kDefaultShapes;
  std::string threads = "1,2";
  std::string dtype = "f32";
  std::string json;
  double min_seconds = 0.25;
  int min_repeats = 5;
  int64_t cold_bytes = int64_t(128) << 20;
};

std::vector<int64_t> parse_ints(const std::string& s, const char* option) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse_positive_int(item, option));
  if (out.empty()) fail("{}: empty list", option);
  return out;
}

std::vector<std::pair<int64_t, int64_t>> parse_shapes(const std::string& s) {
  std::vector<std::pair<int64_t, int64_t>> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t x = item.find('x');
    if (x == std::string::npos) fail("--shapes: '{}' is not NxK", item);
    const auto n = parse_ints(item.substr(0, x), "--shapes"), k = parse_ints(item.substr(x + 1), "--shapes");
    if (k[0] % 4 != 0) fail("--shapes: K = {} in '{}' is not a multiple of 4", k[0], item);
    out.emplace_back(n[0], k[0]);
  }
  if (out.empty()) fail("--shapes: empty list");
  return out;
}

// Median milliseconds of call(copy) over at least min_repeats calls and min_seconds, rotating copies.
template <typename Call>
double median_ms(const BenchOptions& o, int copies, Call&& call) {
  int next = 0;
  for (int i = 0; i < std::min(copies, 3); ++i) call(next++ % copies);  // warm the code, fault the pages
  std::vector<double> ms;
  const auto start = std::chrono::steady_clock::now();
  while (int(ms.size()) < o.min_repeats ||
         (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < o.min_seconds &&
          ms.size() < 2000)) {
    const auto t0 = std::chrono::steady_clock::now();
    call(next++ % copies);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

// Medians of two calls timed in alternation (a, b, a, b, ...), so a change in the machine's load hits both
// alike. Both libraries use the same OpenMP thread pool, so neither leaves spinning threads to the other.
template <typename CallA, typename CallB>
std::pair<double, double> median_pair_ms(const BenchOptions& o, int copies_a, CallA&& a, int copies_b,
                                         CallB&& b) {
  int next_a = 0, next_b = 0;
  for (int i = 0; i < 3; ++i) a(next_a++ % copies_a), b(next_b++ % copies_b);
  std::vector<double> ms_a, ms_b;
  const auto start = std::chrono::steady_clock::now();
  auto time_one = [](auto&& call, int copy) {
    const auto t0 = std::chrono::steady_clock::now();
    call(copy);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  while (
      int(ms_a.size()) < o.min_repeats ||
      (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 2 * o.min_seconds &&
       ms_a.size() < 2000)) {
    ms_a.push_back(time_one(a, next_a++ % copies_a));
    ms_b.push_back(time_one(b, next_b++ % copies_b));
  }
  std::nth_element(ms_a.begin(), ms_a.begin() + ms_a.size() / 2, ms_a.end());
  std::nth_element(ms_b.begin(), ms_b.begin() + ms_b.size() / 2, ms_b.end());
  return {ms_a[ms_a.size() / 2], ms_b[ms_b.size() / 2]};
}

// Lets the previous library's spinning worker threads go to sleep before the next one is timed.
void settle() {
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
}

int copies_for(const BenchOptions& o, int64_t bytes) {
  return int(std::clamp<int64_t>((o.cold_bytes + bytes - 1) / bytes, 2, 4096));
}

// A dense weight of the benchmark's dtype, pruned to 2:4 by magnitude (f32 values for f32/bf16 runs are
// rounded to bf16 first so dense and sparse use the very same numbers).
Tensor make_weight(DType dtype, int64_t N, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor w(DType::f32, {N, K});
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  std::uniform_int_distribution<int> i8(-127, 127);
  float* p = w.data<float>();
  for (int64_t i = 0; i < w.numel(); ++i) p[i] = dtype == DType::i8 ? float(i8(rng)) : real(rng);
  if (dtype != DType::f32) w = w.to(dtype);
  apply_mask(w, magnitude_mask(w));
  return w;
}

struct OneDnn {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

// One oneDNN matmul Y[M][N] = X[M][K] · W[N][K]ᵀ with the weights reordered once, per copy, into the layout
// the primitive prefers (as an engine would do at build time).
struct OneDnnMatmul {
  dnnl::matmul prim;
  dnnl::memory src, dst;
  std::vector<dnnl::memory> weights;
  std::string impl;

  OneDnnMatmul(OneDnn& ctx, int64_t M, int64_t N, int64_t K, dnnl::memory::data_type src_t,
               dnnl::memory::data_type wei_t, dnnl::memory::data_type dst_t, void* x, void* y,
               const std::vector<void*>& w_copies) {
    using tag = dnnl::memory::format_tag;
    dnnl::memory::desc src_md({M, K}, src_t, tag::ab), dst_md({M, N}, dst_t, tag::ab);
    dnnl::memory::desc wei_any({K, N}, wei_t, tag::any), wei_user({K, N}, wei_t, tag::ba);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_any, dst_md), ctx.engine);
    impl = pd.impl_info_str();
    prim = dnnl::matmul(pd);
    src = dnnl::memory(src_md, ctx.engine, x);
    dst = dnnl::memory(dst_md, ctx.engine, y);
    for (void* w : w_copies) {
      dnnl::memory user(wei_user, ctx.engine, w);
      dnnl::memory packed(pd.weights_desc(), ctx.engine);
      dnnl::reorder(user, packed).execute(ctx.stream, user, packed);
      weights.push_back(packed);
    }
    ctx.stream.wait();
  }
  void run(OneDnn& ctx, int copy) {
    prim.execute(ctx.stream,
                 {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights[size_t(copy)]}, {DNNL_ARG_DST, dst}});
    ctx.stream.wait();
  }
};

struct Row {
  int64_t m, n, k;
  int threads;
  std::string dtype, dense_lib, kernel, onednn_impl;
  double openblas_ms = NAN, onednn_ms = NAN, dense_ms = NAN, sparse_ms = NAN, f32_dense_ms = NAN;
  int64_t dense_bytes = 0, sparse_bytes = 0;
};

// --device cuda: cuBLAS, cuSPARSELt and sparse24's mma.sp kernels (kernels/cuda/gpu_gemm_bench.h). Shapes
// and M default to the GPU issue's list when left at the CPU defaults; dtypes f16, bf16, i8.
void run_gpu_bench(const BenchOptions& o, bool m_given, bool shapes_given, bool dtype_given) {
#ifdef SPARSE24_WITH_CUDA
  cuda::GpuGemmBenchOptions g;
  g.shapes = cuda::gpu_bench_model_shapes();
  g.ms = cuda::gpu_bench_model_ms();
  g.dtypes = {DType::bf16, DType::f16, DType::i8};
  if (m_given) g.ms = parse_ints(o.m, "--m");
  if (shapes_given) {
    g.shapes.clear();
    for (const auto& [n, k] : parse_shapes(o.shapes)) g.shapes.emplace_back(n, k);
  }
  if (dtype_given) g.dtypes = {parse_dtype(o.dtype)};
  std::string why;
  if (!cuda::cuda_device_available(&why)) fail("--device cuda: no usable CUDA device ({})", why);
  g.log = [](const std::string& line) { fmt::print("{}\n", line); };
  std::vector<cuda::GpuGemmBenchRow> rows = cuda::run_gpu_gemm_bench(g);
  if (!o.json.empty())
    write_file_atomically(o.json, [&](std::ostream& os) { os << cuda::gpu_gemm_bench_json(rows); });
#else
  fail("--device cuda: this sparse24 was built without CUDA (nvcc was not found at configure time)");
#endif
}

void run_bench(const BenchOptions& o) {
  const DType dtype = parse_dtype(o.dtype);
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::i8)
    fail("--dtype: {} is not benchmarked (f32, bf16 or i8)", o.dtype);
  const auto ms_list = parse_ints(o.m, "--m");
  const auto threads_list = parse_ints(o.threads, "--threads");
  const auto shapes = parse_shapes(o.shapes);
  const cpu::Isa isa = cpu::active_isa();
  fmt::print("sparse24 bench gemm: dtype {}, ISA {} (L1d {} per core), OpenBLAS {} ({}), oneDNN {}.{}.{}\n",
             o.dtype, cpu::isa_name(isa), human_bytes(double(cpu::l1d_bytes())), openblas_get_corename(),
             openblas_get_config(), dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch);
  fmt::print("cold weights: each call reads the next of copies totalling >= {}; times are medians\n\n",
             human_bytes(double(o.cold_bytes)));

  OneDnn dnn;
  std::vector<Row> rows;
  Table table({"N x K", "M", "thr", "openblas ms", "onednn ms", "sparse ms", "eff GF/s", "act GF/s",
               "sparse GB/s", "dense GB/s", "ratio", "vs"});
  using dt = dnnl::memory::data_type;
  bool said_no_bf16 = false;
  for (auto [N, K] : shapes) {
    const Tensor dense = make_weight(dtype, N, K, uint32_t(N * 31 + K));
    const Sparse24 compressed = compress_24(dense);
    // Each copy packed as a layer packs its weight (pack_24 also chooses the pages it lives on).
    std::vector<cpu::Packed24> sparse_w;
    sparse_w.push_back(cpu::pack_24(compressed));
    const int sparse_copies = copies_for(o, sparse_w.front().stream_bytes());
    while (int(sparse_w.size()) < sparse_copies) sparse_w.push_back(cpu::pack_24(compressed));
    // Dense copies in the benchmark's dtype (f32 for OpenBLAS too when the dtype is f32).
    const int64_t dense_bytes = int64_t(dense.nbytes());
    const int dense_copies = copies_for(o, dense_bytes);
    std::vector<Tensor> dense_w(size_t(dense_copies), dense);
    std::vector<void*> dense_ptrs;
    for (auto& t : dense_w) dense_ptrs.push_back(t.bytes());
    // bf16 runs also time f32 dense (OpenBLAS and oneDNN) on the same values widened to f32.
    std::vector<Tensor> f32_w;
    std::vector<void*> f32_ptrs;
    if (dtype == DType::bf16) {
      f32_w.assign(size_t(copies_for(o, N * K * 4)), dense.to(DType::f32));
      for (auto& t : f32_w) f32_ptrs.push_back(t.bytes());
    }

    for (int64_t M : ms_list) {
      std::mt19937 rng{uint32_t(M)};
      std::uniform_real_distribution<float> real(-1.0f, 1.0f);
      std::vector<float> xf(size_t(M * K)), y(size_t(M * N));
      std::vector<int8_t> xi(size_t(M * K));
      std::vector<uint8_t> xu(size_t(M * K));
      std::vector<uint16_t> xbf(size_t(M * K));
      std::vector<int32_t> yi(size_t(M * N));
      for (int64_t i = 0; i < M * K; ++i) {
        xf[size_t(i)] = real(rng);
        xi[size_t(i)] = int8_t(int(rng() % 255) - 127);
        xu[size_t(i)] = uint8_t(xi[size_t(i)] + 128);
        xbf[size_t(i)] = f32_to_bf16(xf[size_t(i)]);
      }
      std::optional<OneDnnMatmul> mm, mm_f32;
      if (dtype == DType::f32)
        mm.emplace(dnn, M, N, K, dt::f32, dt::f32, dt::f32, xf.data(), y.data(), dense_ptrs);
      else if (dtype == DType::bf16) {
        mm_f32.emplace(dnn, M, N, K, dt::f32, dt::f32, dt::f32, xf.data(), y.data(), f32_ptrs);
        // oneDNN has bf16 matmuls only where the CPU has AVX-512 (an AVX2 CPU has no dense bf16 to compare
        // with): the ratio is then against dense f32, and says so.
        try {
          mm.emplace(dnn, M, N, K, dt::bf16, dt::bf16, dt::f32, xbf.data(), y.data(), dense_ptrs);
        } catch (const dnnl::error&) {
          if (!said_no_bf16)
            fmt::print("oneDNN has no bf16 matmul on this CPU: bf16 ratios are against dense f32\n\n");
          said_no_bf16 = true;
        }
      } else {
        mm.emplace(dnn, M, N, K, dt::u8, dt::s8, dt::s32, xu.data(), yi.data(), dense_ptrs);
      }
      // Without a bf16 matmul the dense side is f32 (OpenBLAS and oneDNN), on the same values.
      const bool f32_dense = dtype == DType::f32 || !mm;
      OneDnnMatmul& dense_mm = mm ? *mm : *mm_f32;
      const std::vector<void*>& dense_mm_ptrs = mm ? dense_ptrs : f32_ptrs;
      for (int64_t threads : threads_list) {
        const cpu::Spmm24Kernel& kernel =
            cpu::choose_spmm24_kernel(dtype, M, isa, int(threads), sparse_w.front().stream_bytes());
        Row r{M, N, K, int(threads), o.dtype, "", kernel.name, dense_mm.impl};
        r.dense_bytes = mm ? dense_bytes : N * K * 4;
        r.sparse_bytes = sparse_w.front().stream_bytes();
        omp_set_num_threads(int(threads));
        openblas_set_num_threads(int(threads));
        auto openblas_f32 = [&](const std::vector<void*>& w) {
          return median_ms(o, int(w.size()), [&](int c) {
            const float* wp = static_cast<const float*>(w[size_t(c)]);
            // OpenBLAS 0.3.21 does not route an M=1 sgemm to sgemv, which is 4x faster there.
            if (M == 1)
              cblas_sgemv(CblasRowMajor, CblasNoTrans, int(N), int(K), 1.0f, wp, int(K), xf.data(), 1, 0.0f,
                          y.data(), 1);
            else
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, xf.data(),
                          int(K), wp, int(K), 0.0f, y.data(), int(N));
          });
        };
        if (f32_dense && dtype != DType::i8) {
          r.openblas_ms = openblas_f32(dense_mm_ptrs);
          settle();
        }
        if (dtype == DType::bf16 && mm) {
          const double blas = openblas_f32(f32_ptrs);
          settle();
          const double dnn_f32 = median_ms(o, int(f32_ptrs.size()), [&](int c) { mm_f32->run(dnn, c); });
          r.f32_dense_ms = std::min(blas, dnn_f32);
        }
        cpu::Spmm24Args a;
        a.M = M;
        a.X = dtype == DType::i8 ? static_cast<const void*>(xi.data()) : static_cast<const void*>(xf.data());
        a.ldx = K;
        a.Y = y.data();
        a.ldy = N;
        std::tie(r.onednn_ms, r.sparse_ms) = median_pair_ms(
            o, int(dense_mm_ptrs.size()), [&](int c) { dense_mm.run(dnn, c); }, sparse_copies,
            [&](int c) {
              a.W = &sparse_w[size_t(c)];
              cpu::spmm24_run(kernel, a, int(threads));
            });
        settle();
        if (std::isnan(r.openblas_ms) || r.onednn_ms <= r.openblas_ms) {
          r.dense_ms = r.onednn_ms;
          r.dense_lib = f32_dense && dtype != DType::i8 ? "onednn" : fmt::format("onednn-{}", o.dtype);
        } else {
          r.dense_ms = r.openblas_ms;
          r.dense_lib = M == 1 ? "openblas-sgemv" : "openblas-sgemm";
        }
        if (dtype == DType::bf16 && !mm) r.f32_dense_ms = r.dense_ms;
        const double flops = 2.0 * double(M) * double(N) * double(K);
        table.add({fmt::format("{}x{}", N, K), std::to_string(M), std::to_string(threads),
                   std::isnan(r.openblas_ms) ? "-" : fmt::format("{:.3f}", r.openblas_ms),
                   fmt::format("{:.3f}", r.onednn_ms), fmt::format("{:.3f}", r.sparse_ms),
                   fmt::format("{:.1f}", flops / r.sparse_ms / 1e6),
                   fmt::format("{:.1f}", flops / 2 / r.sparse_ms / 1e6),
                   fmt::format("{:.1f}", double(r.sparse_bytes) / r.sparse_ms / 1e6),
                   fmt::format("{:.1f}", double(r.dense_bytes) / r.dense_ms / 1e6),
                   fmt::format("{:.2f}", r.dense_ms / r.sparse_ms), r.dense_lib});
        fmt::print("{:>11} M={:<5} threads={} {} {:.3f} ms, sparse {:.3f} ms ({}), ratio {:.2f}{}\n",
                   fmt::format("{}x{}", N, K), M, threads, r.dense_lib, r.dense_ms, r.sparse_ms, kernel.name,
                   r.dense_ms / r.sparse_ms,
                   std::isnan(r.f32_dense_ms)
                       ? ""
                       : fmt::format(", vs f32 dense {:.2f}", r.f32_dense_ms / r.sparse_ms));
        std::fflush(stdout);
        rows.push_back(r);
      }
    }
  }
  fmt::print("\n");
  table.print();
  if (!o.json.empty()) {
    nlohmann::json j = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json e = {{"m", r.m},
                          {"n", r.n},
                          {"k", r.k},
                          {"threads", r.threads},
                          {"dtype", r.dtype},
                          {"isa", std::string(cpu::isa_name(isa))},
                          {"l1d_bytes", cpu::l1d_bytes()},
                          {"dense_ms", r.dense_ms},
                          {"dense_lib", r.dense_lib},
                          {"onednn_ms", r.onednn_ms},
                          {"onednn_impl", r.onednn_impl},
                          {"sparse_ms", r.sparse_ms},
                          {"sparse_kernel", r.kernel},
                          {"ratio", r.dense_ms / r.sparse_ms},
                          // What the engine's planner would pick from these two medians.
                          {"tactic", r.dense_ms < r.sparse_ms ? "dense" : "sparse24"},
                          {"effective_gflops", 2.0 * double(r.m * r.n * r.k) / r.sparse_ms / 1e6},
                          {"actual_gflops", double(r.m * r.n * r.k) / r.sparse_ms / 1e6},
                          {"sparse_weight_gbs", double(r.sparse_bytes) / r.sparse_ms / 1e6},
                          {"dense_weight_gbs", double(r.dense_bytes) / r.dense_ms / 1e6}};
      if (!std::isnan(r.openblas_ms)) e["openblas_ms"] = r.openblas_ms;
      if (!std::isnan(r.f32_dense_ms)) {
        e["f32_dense_ms"] = r.f32_dense_ms;
        e["ratio_vs_f32_dense"] = r.f32_dense_ms / r.sparse_ms;
      }
      j.push_back(e);
    }
    write_json(o.json, j);
    fmt::print("wrote {}\n", o.json);
  }
}

}  // namespace

void add_bench_gemm_command(CLI::App& app) {
  // `bench` may already exist when other benchmarks registered first.
  CLI::App* bench = nullptr;
  try {
    bench = app.get_subcommand("bench");
  } catch (const CLI::OptionNotFound&) {
    bench = app.add_subcommand("bench", "Benchmarks (never run as tests)");
    bench->require_subcommand(1);
  }
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd =
      bench->add_subcommand("gemm", "2:4 CPU GEMM/GEMV vs dense OpenBLAS and oneDNN, cold weights");
  cmd->add_option("--device", o->device, "cpu, or cuda: cuBLAS vs cuSPARSELt vs sparse24's mma.sp kernels")
      ->capture_default_str();
  CLI::Option* m_opt = cmd->add_option("--m", o->m, "rows of X, comma-separated")->capture_default_str();
  CLI::Option* shapes_opt =
      cmd->add_option("--shapes", o->shapes, "weight shapes NxK, comma-separated")->capture_default_str();
  cmd->add_option("--threads", o->threads, "thread counts, comma-separated")->capture_default_str();
  CLI::Option* dtype_opt =
      cmd->add_option("--dtype", o->dtype,
                      "f32 | bf16 (weights; f32 activations) | i8 (cuda: f16 | bf16 | i8)")
          ->capture_default_str();
  cmd->add_option("--json", o->json, "also write the results as a JSON list to this file");
  cmd->add_option("--min-seconds", o->min_seconds, "time each case at least this long")
      ->capture_default_str();
  cmd->callback([o, m_opt, shapes_opt, dtype_opt] {
    if (o->device == "cuda")
      run_gpu_bench(*o, m_opt->count() > 0, shapes_opt->count() > 0, dtype_opt->count() > 0);
    else if (o->device == "cpu")
      run_bench(*o);
    else
      fail("--device must be cpu or cuda (got '{}')", o->device);
  });
}

}  // namespace sparse24::cli
