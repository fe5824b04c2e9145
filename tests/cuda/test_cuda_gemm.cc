// GPU tests of the CUDA backend against the one reference (reference/gemm.h), on integer-valued data so that
// every f32/i32 sum is exact and results must match bit for bit: sparse24's mma.sp kernels (both kernels,
// every operand type, f32 and narrow outputs, bias + ReLU, partial tiles in N, M and K), the cuBLAS baseline
// and the cuSPARSELt backend. Without a CUDA device the program prints "no CUDA device: skipped" and exits 77
// (ctest: skipped). cuSPARSELt missing is a skip of its cases, or a failure when
// SPARSE24_REQUIRE_CUSPARSELT=1.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>

#include "check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cusparselt_gemm.h"
#include "kernels/cuda/dense_cublas.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/sp24_gemm.h"
#include "reference/gemm.h"
#include "util/error.h"

using namespace sparse24;
using namespace sparse24::cuda;

namespace {

using reference::Activation;

struct Problem {
  int64_t m, n, k;
};

std::string name(DType d) {
  return std::string(dtype_name(d));
}

std::string kernel_name(Sp24Kernel k) {
  return k == Sp24Kernel::small_m ? "small_m" : k == Sp24Kernel::large_m ? "large_m" : "automatic";
}

// A dense 2:4 weight [n][k] of small nonzero integers in random kept positions.
Tensor random_24_dense(int64_t n, int64_t k, DType dtype, int max_abs, std::mt19937& rng) {
  Tensor w(dtype, {n, k});
  static constexpr int kPairs[6][2] = {{0, 1}, {0, 2}, {1, 2}, {0, 3}, {1, 3}, {2, 3}};
  std::uniform_int_distribution<int> pair(0, 5), value(-max_abs, max_abs);
  for (int64_t g = 0; g < n * k / 4; ++g) {
    const int p = pair(rng);
    for (int i = 0; i < 2; ++i) {
      int v = value(rng);
      w.set(g * 4 + kPairs[p][i], float(v == 0 ? 1 : v));
    }
  }
  return w;
}

Tensor random_tensor(std::vector<int64_t> shape, DType dtype, int max_abs, std::mt19937& rng) {
  Tensor t(dtype, std::move(shape));
  std::uniform_int_distribution<int> value(-max_abs, max_abs);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, float(value(rng)));
  return t;
}

// Expected Y (as f32 or i32 held in double) from the reference, then rounded to the output dtype as the
// kernel's epilogue does (one round-to-nearest-even of the exact sum).
std::vector<double> reference_product(const Tensor& x, const Sparse24& w, const std::vector<float>* bias,
                                      reference::Activation act, DType out) {
  const int64_t m = x.dim(0), n = w.rows, k = w.cols;
  std::vector<double> y(size_t(m * n));
  if (w.dtype == DType::i8) {
    std::vector<int32_t> yi(size_t(m * n));
    reference::gemm_24_i8(m, x.data<int8_t>(), k, w, yi.data(), n);
    for (size_t i = 0; i < y.size(); ++i) y[i] = yi[i];
    return y;
  }
  Tensor xf = x.to(DType::f32);
  std::vector<float> yf(size_t(m * n));
  reference::gemm_24_f32(m, xf.data<float>(), k, w, bias ? bias->data() : nullptr, act, yf.data(), n);
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = out == DType::f16    ? f16_to_f32(f32_to_f16(yf[i]))
           : out == DType::bf16 ? bf16_to_f32(f32_to_bf16(yf[i]))
                                : yf[i];
  return y;
}

std::vector<double> download(const DeviceBuffer& y, int64_t count, DType out) {
  Tensor h(out, {count});
  S24_CUDA_CHECK(cudaMemcpy(h.bytes(), y.get(), h.nbytes(), cudaMemcpyDeviceToHost));
  std::vector<double> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    v[size_t(i)] = out == DType::i32 ? double(h.data<int32_t>()[i]) : double(h.get(i));
  return v;
}

// Exact comparison (or within `tolerance` relative, for GELU whose erf differs in the last bits); refuses an
// all-zero expectation, which would let a kernel that writes nothing pass.
void compare(const std::vector<double>& got, const std::vector<double>& want, double tolerance,
             const std::string& what) {
  int64_t bad = 0, nonzero = 0, first_bad = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    nonzero += want[i] != 0;
    const double err = std::fabs(got[i] - want[i]);
    if (tolerance == 0 ? got[i] != want[i] : err > tolerance * std::max(1.0, std::fabs(want[i]))) {
      if (first_bad < 0) first_bad = int64_t(i);
      ++bad;
    }
  }
  CHECK(nonzero > 0, "%s: the expected result is all zero", what.c_str());
  CHECK(bad == 0, "%s: %lld of %zu outputs wrong (first at %lld: got %g, want %g)", what.c_str(),
        (long long)bad, want.size(), (long long)first_bad, first_bad >= 0 ? got[size_t(first_bad)] : 0.0,
        first_bad >= 0 ? want[size_t(first_bad)] : 0.0);
}

void test_sp24(DType dtype, const Problem& pr, Sp24Kernel kernel, DType out, bool with_bias,
               reference::Activation act, std::mt19937& rng) {
  const bool gelu = act == reference::Activation::gelu;
  const std::string what = "sp24 " + name(dtype) + "->" + name(out) + " " + kernel_name(kernel) +
                           " m=" + std::to_string(pr.m) + " n=" + std::to_string(pr.n) +
                           " k=" + std::to_string(pr.k) + (with_bias ? " +bias" : "") + " activation " +
                           std::to_string(int(act));
  Tensor wd = random_24_dense(pr.n, pr.k, dtype, 3, rng);
  Sparse24 w = compress_24(wd, "test weight");
  Tensor x = random_tensor({pr.m, pr.k}, dtype, 3, rng);
  std::vector<float> bias(size_t(pr.n));
  std::uniform_int_distribution<int> bv(-20, 20);
  for (float& b : bias) b = float(bv(rng));

  Sp24GemmConfig config;
  config.output = out;
  config.has_bias = with_bias;
  config.activation = act;
  CHECK(Sp24Gemm::can_implement(w, config).empty(), "%s: can_implement refused: %s", what.c_str(),
        Sp24Gemm::can_implement(w, config).c_str());
  Sp24Gemm op;
  op.initialize(w, config, with_bias ? bias.data() : nullptr, nullptr);

  DeviceBuffer dx(x.nbytes()), dy(size_t(pr.m * pr.n) * dtype_size(out));
  dx.upload(x.bytes(), x.nbytes(), nullptr);
  // Poison Y so that an output the kernel forgets to write cannot pass as a correct zero.
  S24_CUDA_CHECK(cudaMemset(dy.get(), 0x7f, dy.size()));
  Sp24GemmArguments args;
  args.m = pr.m, args.x = dx.get(), args.ldx = pr.k, args.y = dy.get(), args.ldy = pr.n, args.kernel = kernel;
  op.run(args, nullptr);
  S24_CUDA_CHECK(cudaDeviceSynchronize());
  compare(download(dy, pr.m * pr.n, out),
          reference_product(x, w, with_bias ? &bias : nullptr, config.activation, out), gelu ? 1e-5 : 0.0,
          what);
}

// Row strides wider than the rows (padding filled with NaN, or 127 for i8, which must never be read into a
// result), and run() captured into a CUDA graph: capture fails if run() synchronises, allocates or touches
// another stream, so a passing capture shows run() is a bare launch. The output's padding must stay
// untouched.
void test_sp24_strided_in_graph(DType dtype, const Problem& pr, Sp24Kernel kernel, std::mt19937& rng) {
  const DType out = dtype == DType::i8 ? DType::i32 : DType::f32;
  const int64_t ldx = pr.k + 16, ldy = pr.n + 5;  // ldx keeps rows 16-byte aligned for both element sizes
  const std::string what = "sp24 " + name(dtype) + " strided, in a CUDA graph, " + kernel_name(kernel) +
                           " m=" + std::to_string(pr.m) + " n=" + std::to_string(pr.n) +
                           " k=" + std::to_string(pr.k);
  Sparse24 w = compress_24(random_24_dense(pr.n, pr.k, dtype, 3, rng), "test weight");
  Tensor x = random_tensor({pr.m, pr.k}, dtype, 3, rng);
  Tensor x_strided(dtype, {pr.m, ldx});
  for (int64_t m = 0; m < pr.m; ++m)
    for (int64_t k = 0; k < ldx; ++k)
      x_strided.set(m * ldx + k, k < pr.k ? x.get(m * pr.k + k) : dtype == DType::i8 ? 127.0f : NAN);

  Sp24GemmConfig config;
  config.output = out;
  Sp24Gemm op;
  op.initialize(w, config, nullptr, nullptr);
  DeviceBuffer dx(x_strided.nbytes()), dy(size_t(pr.m * ldy) * dtype_size(out));
  dx.upload(x_strided.bytes(), x_strided.nbytes(), nullptr);
  S24_CUDA_CHECK(cudaMemset(dy.get(), 0x7f, dy.size()));
  S24_CUDA_CHECK(cudaDeviceSynchronize());

  cudaStream_t stream;
  S24_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  Sp24GemmArguments args;
  args.m = pr.m, args.x = dx.get(), args.ldx = ldx, args.y = dy.get(), args.ldy = ldy, args.kernel = kernel;
  S24_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  try {
    op.run(args, stream);
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    throw;
  }
  S24_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  S24_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  S24_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);

  const std::vector<double> all = download(dy, pr.m * ldy, out);
  std::vector<double> got(size_t(pr.m * pr.n));
  int64_t padding_written = 0;
  // What the 0x7f bytes of the memset read as.
  const uint32_t poison_bits = 0x7f7f7f7fu;
  float poison_f32;
  std::memcpy(&poison_f32, &poison_bits, 4);
  const double poison = out == DType::i32 ? double(int32_t(poison_bits)) : double(poison_f32);
  for (int64_t m = 0; m < pr.m; ++m)
    for (int64_t n = 0; n < ldy; ++n) {
      const double v = all[size_t(m * ldy + n)];
      if (n < pr.n)
        got[size_t(m * pr.n + n)] = v;
      else
        padding_written += v != poison;
    }
  CHECK(padding_written == 0, "%s: %lld values written into the output's row padding", what.c_str(),
        (long long)padding_written);
  compare(got, reference_product(x, w, nullptr, reference::Activation::none, out), 0.0, what);
}

void test_cublas(DType dtype, const Problem& pr, CublasDenseGemm& cublas, std::mt19937& rng) {
  const DType out = dtype == DType::i8 ? DType::i32 : DType::f32;
  Tensor wd = random_24_dense(pr.n, pr.k, dtype, 3, rng);
  Tensor x = random_tensor({pr.m, pr.k}, dtype, 3, rng);
  DeviceBuffer dw(wd.nbytes()), dx(x.nbytes()), dy(size_t(pr.m * pr.n) * dtype_size(out));
  dw.upload(wd.bytes(), wd.nbytes(), nullptr);
  dx.upload(x.bytes(), x.nbytes(), nullptr);
  cublas.run(pr.m, pr.n, pr.k, dtype, out, dx.get(), dw.get(), dy.get(), nullptr);
  S24_CUDA_CHECK(cudaDeviceSynchronize());
  compare(download(dy, pr.m * pr.n, out),
          reference_product(x, compress_24(wd, "w"), nullptr, reference::Activation::none, out), 0.0,
          "cublas " + name(dtype) + " m=" + std::to_string(pr.m) + " n=" + std::to_string(pr.n));
}

void test_cusparselt(DType dtype, const Problem& pr, std::mt19937& rng) {
  const DType out = dtype == DType::i8 ? DType::i32 : dtype;
  // Small values: the f16/bf16 outputs are rounded once from the exact sum, like the reference's.
  Tensor wd = random_24_dense(pr.n, pr.k, dtype, 2, rng);
  Tensor x = random_tensor({pr.m, pr.k}, dtype, 2, rng);
  CusparseltGemm op;
  op.initialize(wd, out, nullptr);
  DeviceBuffer dx(x.nbytes()), dy(size_t(pr.m * pr.n) * dtype_size(out));
  dx.upload(x.bytes(), x.nbytes(), nullptr);
  op.run(pr.m, dx.get(), dy.get(), nullptr);  // first call: plan + search
  S24_CUDA_CHECK(cudaMemset(dy.get(), 0x7f, dy.size()));
  op.run(pr.m, dx.get(), dy.get(), nullptr);  // cached plan
  S24_CUDA_CHECK(cudaDeviceSynchronize());
  compare(download(dy, pr.m * pr.n, out),
          reference_product(x, compress_24(wd, "w"), nullptr, reference::Activation::none, out), 0.0,
          "cusparselt " + name(dtype) + " m=" + std::to_string(pr.m) + " n=" + std::to_string(pr.n) +
              " k=" + std::to_string(pr.k));
}

void test_refusals() {
  std::mt19937 rng(1);
  Sparse24 w = compress_24(random_24_dense(32, 36, DType::f16, 2, rng), "w");  // K = 36: not a multiple of 8
  CHECK(!Sp24Gemm::can_implement(w, Sp24GemmConfig{}).empty(), "K = 36 f16 was accepted");
  Sparse24 wi = compress_24(random_24_dense(32, 64, DType::i8, 2, rng), "w");
  Sp24GemmConfig f32_out;
  CHECK(!Sp24Gemm::can_implement(wi, f32_out).empty(), "i8 -> f32 was accepted");
  bool threw = false;
  try {
    Sp24Gemm op;
    op.initialize(w, Sp24GemmConfig{}, nullptr, nullptr);
  } catch (const Error&) {
    threw = true;
  }
  CHECK(threw, "initialize accepted a weight can_implement refuses");
}

}  // namespace

int main() {
  std::string why;
  if (!cuda_device_available(&why)) {
    std::printf("no CUDA device: skipped (%s)\n", why.c_str());
    return test::kSkipped;
  }
  try {
    cudaDeviceProp prop{};
    S24_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    std::mt19937 rng(2024);
    test_refusals();

    // K multiples of 8 (16-bit) or 16 (i8) that leave a partial k-step; N partial row tiles; M partial n8 /
    // 64-row / 128-row tiles, including M = 1 and M just above the small-M limit.
    const std::vector<Problem> problems16 = {{1, 32, 32},    {7, 40, 40},    {64, 96, 128},
                                             {33, 100, 200}, {130, 72, 264}, {300, 160, 96}};
    const std::vector<Problem> problems8 = {{1, 32, 64},    {7, 40, 80},    {64, 96, 128},
                                            {33, 100, 208}, {130, 72, 272}, {300, 160, 96}};
    for (DType dtype : {DType::f16, DType::bf16, DType::i8}) {
      const auto& problems = dtype == DType::i8 ? problems8 : problems16;
      const DType narrow = dtype == DType::i8 ? DType::i32 : dtype;
      const DType wide = dtype == DType::i8 ? DType::i32 : DType::f32;
      for (const Problem& pr : problems)
        for (Sp24Kernel kernel : {Sp24Kernel::small_m, Sp24Kernel::large_m}) {
          test_sp24(dtype, pr, kernel, wide, false, Activation::none, rng);
          if (dtype != DType::i8) {
            test_sp24(dtype, pr, kernel, narrow, false, Activation::none, rng);
            test_sp24(dtype, pr, kernel, wide, true, Activation::relu, rng);
          }
        }
      if (dtype != DType::i8) {
        test_sp24(dtype, {50, 64, 128}, Sp24Kernel::automatic, DType::f32, false, Activation::gelu, rng);
        test_sp24(dtype, {50, 64, 128}, Sp24Kernel::automatic, DType::f32, true, Activation::relu6, rng);
      }
      for (Sp24Kernel kernel : {Sp24Kernel::small_m, Sp24Kernel::large_m})
        test_sp24_strided_in_graph(dtype, dtype == DType::i8 ? Problem{70, 72, 144} : Problem{70, 72, 136},
                                   kernel, rng);
      // A problem large enough for many blocks in both grid dimensions.
      test_sp24(dtype, {520, 1056, 512}, Sp24Kernel::automatic, wide, false, Activation::none, rng);
      test_sp24(dtype, {100, 1056, 512}, Sp24Kernel::automatic, wide, false, Activation::none, rng);
    }

    CublasDenseGemm cublas;
    for (DType dtype : {DType::f16, DType::bf16, DType::i8}) test_cublas(dtype, {33, 96, 128}, cublas, rng);

    std::string cslt_why = CusparseltGemm::availability();
    const char* require = std::getenv("SPARSE24_REQUIRE_CUSPARSELT");
    if (!cslt_why.empty()) {
      CHECK(!(require && std::string(require) == "1"), "cuSPARSELt required but unavailable: %s",
            cslt_why.c_str());
      std::printf("cuSPARSELt cases skipped: %s\n", cslt_why.c_str());
    } else {
      // M a multiple of 32: the row multiple cuSPARSELt's dense operand wants for every dtype here.
      for (DType dtype : {DType::f16, DType::bf16, DType::i8})
        for (const Problem& pr : std::vector<Problem>{{32, 64, 128}, {64, 128, 256}})
          test_cusparselt(dtype, pr, rng);
    }
  } catch (const std::exception& e) {
    CHECK(false, "exception: %s", e.what());
  }
  return test::test_exit_code("test_cuda_gemm");
}
