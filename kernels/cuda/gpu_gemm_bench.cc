#include "kernels/cuda/gpu_gemm_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cusparselt_gemm.h"
#include "kernels/cuda/dense_cublas.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/sp24_gemm.h"
#include "util/error.h"

namespace sparse24::cuda {

std::vector<std::pair<int64_t, int64_t>> gpu_bench_model_shapes() {
  return {{384, 384},   {1536, 384},   {384, 1536},   {768, 768},   {3072, 768},  {768, 3072},
          {4096, 4096}, {11008, 4096}, {4096, 11008}, {8192, 8192}, {14336, 4096}};
}

std::vector<int64_t> gpu_bench_model_ms() {
  return {1, 16, 64, 128, 1024, 4096, 16384};
}

namespace {

DType output_of(DType operand) {
  return operand == DType::i8 ? DType::i32 : operand;
}

// CUDA events wrapped so that an exception cannot leak them.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() {
    S24_CUDA_CHECK(cudaEventCreate(&start));
    S24_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~EventPair() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  float elapsed_ms() const {
    float ms = 0;
    S24_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms;
  }
};

struct Timing {
  double kernel_ms = 0, host_us = 0;
};

// Kernel time per call from events around each call (after an L2 flush when cold), and host time per call
// from a back-to-back loop: with the GPU busy the launches queue up, so the loop's wall time is what the
// host spends enqueueing.
template <typename Launch>
Timing time_calls(Launch&& launch, cudaStream_t stream, const GpuGemmBenchOptions& o, DeviceBuffer& flush) {
  auto flush_l2 = [&] {
    if (o.cold_l2 && flush.get()) S24_CUDA_CHECK(cudaMemsetAsync(flush.get(), 0, flush.size(), stream));
  };
  EventPair ev;
  launch();  // warm-up: first-call costs (module load, plan search) stay out of the numbers
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));
  flush_l2();
  S24_CUDA_CHECK(cudaEventRecord(ev.start, stream));
  launch();
  S24_CUDA_CHECK(cudaEventRecord(ev.stop, stream));
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));
  const double pilot = std::max(1e-3, double(ev.elapsed_ms()));
  const int iters = int(std::clamp(o.target_ms / pilot, double(o.min_iters), double(o.max_iters)));

  double total = 0;
  for (int i = 0; i < iters; ++i) {
    flush_l2();
    S24_CUDA_CHECK(cudaEventRecord(ev.start, stream));
    launch();
    S24_CUDA_CHECK(cudaEventRecord(ev.stop, stream));
    S24_CUDA_CHECK(cudaEventSynchronize(ev.stop));
    total += ev.elapsed_ms();
  }
  Timing t;
  t.kernel_ms = total / iters;

  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) launch();
  auto t1 = std::chrono::steady_clock::now();
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));
  t.host_us = std::chrono::duration<double, std::micro>(t1 - t0).count() / iters;
  return t;
}

// A random 2:4 weight [n][k]: every group keeps a random pair of positions with small nonzero integers (so
// the three libraries' products are comparable exactly in i8 and closely in f16/bf16).
Tensor random_24_weight(int64_t n, int64_t k, DType dtype, std::mt19937& rng) {
  Tensor w(dtype, {n, k});
  static constexpr int kPairs[6][2] = {{0, 1}, {0, 2}, {1, 2}, {0, 3}, {1, 3}, {2, 3}};
  std::uniform_int_distribution<int> pair(0, 5), value(1, 3), sign(0, 1);
  for (int64_t g = 0; g < n * k / 4; ++g) {
    const int p = pair(rng);
    for (int i = 0; i < 2; ++i) w.set(g * 4 + kPairs[p][i], float(sign(rng) ? value(rng) : -value(rng)));
  }
  return w;
}

// Fills `bytes` of device memory with small random integers of `dtype` by repeating one random host block.
void fill_device_random(DeviceBuffer& buf, DType dtype, std::mt19937& rng, cudaStream_t stream) {
  const int64_t block_elems = 1 << 20;
  Tensor block(dtype, {block_elems});
  std::uniform_int_distribution<int> value(-3, 3);
  for (int64_t i = 0; i < block_elems; ++i) block.set(i, float(value(rng)));
  const size_t block_bytes = std::min(block.nbytes(), buf.size());
  DeviceBuffer dev_block(block_bytes);
  dev_block.upload(block.bytes(), block_bytes, stream);
  for (size_t off = 0; off < buf.size(); off += block_bytes)
    S24_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(buf.get()) + off, dev_block.get(),
                                   std::min(block_bytes, buf.size() - off), cudaMemcpyDeviceToDevice,
                                   stream));
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// Max |b - a| / max(1, max |a|) over the first `rows` rows of two device outputs Y[.][n].
double max_rel_diff(const void* a, const void* b, int64_t rows, int64_t n, DType out, cudaStream_t stream) {
  const size_t bytes = size_t(rows * n) * dtype_size(out);
  Tensor ha(out, {rows, n}), hb(out, {rows, n});
  S24_CUDA_CHECK(cudaMemcpyAsync(ha.bytes(), a, bytes, cudaMemcpyDeviceToHost, stream));
  S24_CUDA_CHECK(cudaMemcpyAsync(hb.bytes(), b, bytes, cudaMemcpyDeviceToHost, stream));
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));
  double max_abs = 1, max_diff = 0;
  for (int64_t i = 0; i < rows * n; ++i) {
    const double va = out == DType::i32 ? double(ha.data<int32_t>()[i]) : double(ha.get(i));
    const double vb = out == DType::i32 ? double(hb.data<int32_t>()[i]) : double(hb.get(i));
    max_abs = std::max(max_abs, std::fabs(va));
    max_diff = std::max(max_diff, std::fabs(vb - va));
  }
  return max_diff / max_abs;
}

std::string format_row(const GpuGemmBenchRow& r) {
  char line[320];
  if (!r.error.empty())
    std::snprintf(line, sizeof line, "%-5s m=%-6lld n=%-6lld k=%-6lld %-10s FAILED: %s", r.dtype.c_str(),
                  (long long)r.m, (long long)r.n, (long long)r.k, r.sparse_lib.c_str(), r.error.c_str());
  else
    std::snprintf(line, sizeof line,
                  "%-5s m=%-6lld n=%-6lld k=%-6lld cublas %9.4f ms | %-10s %-8s %9.4f ms  x%5.2f  %6.1f TF/s "
                  "%7.1f GB/s  "
                  "host %6.1f us (cublas %6.1f us)  diff %.1e",
                  r.dtype.c_str(), (long long)r.m, (long long)r.n, (long long)r.k, r.dense_ms,
                  r.sparse_lib.c_str(), r.sparse_kernel.c_str(), r.sparse_ms, r.ratio, r.sparse_tflops,
                  r.sparse_weight_gbps, r.host_overhead_us, r.dense_host_overhead_us,
                  r.max_rel_diff_vs_dense);
  return line;
}

}  // namespace

std::vector<GpuGemmBenchRow> run_gpu_gemm_bench(const GpuGemmBenchOptions& o) {
  std::string why;
  if (!cuda_device_available(&why)) fail("no CUDA device: {}", why);
  cudaStream_t stream = nullptr;
  S24_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } stream_guard{stream};

  int device = 0, l2_bytes = 0;
  S24_CUDA_CHECK(cudaGetDevice(&device));
  S24_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  DeviceBuffer flush(o.cold_l2 ? size_t(l2_bytes) * 2 : 0);

  CublasDenseGemm cublas;
  std::string cslt_why = o.cusparselt ? CusparseltGemm::availability() : "left out (--no-cusparselt)";
  std::mt19937 rng(24);
  std::vector<GpuGemmBenchRow> rows;
  if (o.shapes.empty() || o.ms.empty()) return rows;
  // Room for M rounded up to cuSPARSELt's row multiple (at most 32).
  const int64_t max_m = (*std::max_element(o.ms.begin(), o.ms.end()) + 31) / 32 * 32;
  int64_t max_n = 0, max_k = 0;
  for (auto [n, k] : o.shapes) max_n = std::max(max_n, n), max_k = std::max(max_k, k);

  for (DType dtype : o.dtypes) {
    const DType out = output_of(dtype);
    DeviceBuffer x(size_t(max_m * max_k) * dtype_size(dtype));
    DeviceBuffer y_dense(size_t(max_m * max_n) * dtype_size(out)), y_sparse(y_dense.size());
    fill_device_random(x, dtype, rng, stream);

    for (const auto& shape : o.shapes) {
      const int64_t n = shape.first, k = shape.second;  // plain variables: lambdas below capture them
      Tensor w = random_24_weight(n, k, dtype, rng);
      DeviceBuffer w_dense(w.nbytes());
      w_dense.upload(w.bytes(), w.nbytes(), stream);
      Sp24Gemm ours;
      Sp24GemmConfig config;
      config.output = out;
      ours.initialize(compress_24(w, "bench weight"), config, nullptr, stream);  // waits for the uploads
      // The 2:4 weight's bytes as both libraries store it: half the values plus 2 bits per kept value.
      const size_t weight_bytes = size_t(n * k / 2) * dtype_size(dtype) + size_t(n * k / 8);
      std::unique_ptr<CusparseltGemm> cslt;
      std::string cslt_error = cslt_why;
      if (cslt_error.empty()) {
        try {
          cslt = std::make_unique<CusparseltGemm>();
          cslt->initialize(w, out, stream);
        } catch (const Error& e) {
          cslt.reset();
          cslt_error = e.what();
        }
      }

      for (int64_t m : o.ms) {
        GpuGemmBenchRow base;
        base.m = m, base.n = n, base.k = k, base.dtype = std::string(dtype_name(dtype));
        Timing dense = time_calls(
            [&] { cublas.run(m, n, k, dtype, out, x.get(), w_dense.get(), y_dense.get(), stream); }, stream,
            o, flush);
        base.dense_ms = dense.kernel_ms;
        const double flops = 2.0 * double(m) * double(n) * double(k);
        base.dense_tflops = dense.kernel_ms > 0 ? flops / (dense.kernel_ms * 1e9) : 0;
        base.dense_host_overhead_us = dense.host_us;
        const int64_t check_rows = std::min<int64_t>(m, 16);

        auto finish = [&](GpuGemmBenchRow r, const Timing& t) {
          r.sparse_ms = t.kernel_ms;
          r.host_overhead_us = t.host_us;
          r.ratio = t.kernel_ms > 0 ? base.dense_ms / t.kernel_ms : 0;
          r.sparse_tflops = t.kernel_ms > 0 ? flops / (t.kernel_ms * 1e9) : 0;
          r.sparse_weight_gbps = t.kernel_ms > 0 ? double(weight_bytes) / (t.kernel_ms * 1e6) : 0;
          r.max_rel_diff_vs_dense = max_rel_diff(y_dense.get(), y_sparse.get(), check_rows, n, out, stream);
          return r;
        };

        GpuGemmBenchRow cs = base;
        cs.sparse_lib = "cusparselt";
        cs.sparse_kernel = "searched";
        if (!cslt) {
          cs.error = cslt_error;
        } else {
          // Like PyTorch, pad the activation rows to what cuSPARSELt accepts (the buffers hold them).
          const int64_t rm = CusparseltGemm::row_multiple(dtype), m_cslt = (m + rm - 1) / rm * rm;
          if (m_cslt != m) cs.sparse_kernel = "searched, M padded to " + std::to_string(m_cslt);
          try {
            cslt->prepare(m_cslt, x.get(), y_sparse.get(),
                          stream);  // plan + algorithm search, outside timing
            cs = finish(cs, time_calls([&] { cslt->run(m_cslt, x.get(), y_sparse.get(), stream); }, stream, o,
                                       flush));
          } catch (const Error& e) {
            cs.error = e.what();
          }
        }
        rows.push_back(cs);
        if (o.log) o.log(format_row(cs));
        if (o.on_row) o.on_row(cs);

        GpuGemmBenchRow ours_row = base;
        ours_row.sparse_lib = "sparse24";
        ours_row.sparse_kernel = Sp24Gemm::kernel_for(m) == Sp24Kernel::small_m ? "small_m" : "large_m";
        try {
          Sp24GemmArguments args;
          args.m = m, args.x = x.get(), args.ldx = k, args.y = y_sparse.get(), args.ldy = n;
          ours_row = finish(ours_row, time_calls([&] { ours.run(args, stream); }, stream, o, flush));
        } catch (const Error& e) {
          ours_row.error = e.what();
        }
        rows.push_back(ours_row);
        if (o.log) o.log(format_row(ours_row));
        if (o.on_row) o.on_row(ours_row);
      }
    }
  }
  return rows;
}

std::string gpu_gemm_bench_json(const std::vector<GpuGemmBenchRow>& rows) {
  auto quoted = [](const std::string& s) {
    std::string q = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') q += '\\';
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
      q += c;
    }
    return q + "\"";
  };
  auto number = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", std::isfinite(v) ? v : 0.0);
    return std::string(b);
  };
  std::ostringstream os;
  os << "[\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const GpuGemmBenchRow& r = rows[i];
    os << "  {\"m\": " << r.m << ", \"n\": " << r.n << ", \"k\": " << r.k
       << ", \"dtype\": " << quoted(r.dtype) << ", \"dense_ms\": " << number(r.dense_ms)
       << ", \"dense_lib\": " << quoted(r.dense_lib)
       << ", \"dense_host_overhead_us\": " << number(r.dense_host_overhead_us)
       << ", \"sparse_ms\": " << number(r.sparse_ms) << ", \"sparse_lib\": " << quoted(r.sparse_lib)
       << ", \"sparse_kernel\": " << quoted(r.sparse_kernel) << ", \"ratio\": " << number(r.ratio)
       << ", \"host_overhead_us\": " << number(r.host_overhead_us)
       << ", \"dense_tflops\": " << number(r.dense_tflops)
       << ", \"sparse_tflops\": " << number(r.sparse_tflops)
       << ", \"sparse_weight_gbps\": " << number(r.sparse_weight_gbps)
       << ", \"max_rel_diff_vs_dense\": " << number(r.max_rel_diff_vs_dense)
       << ", \"error\": " << quoted(r.error) << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  os << "]\n";
  return os.str();
}

}  // namespace sparse24::cuda
