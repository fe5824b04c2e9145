// Every CPU 2:4 kernel in the registry against the reference, exactly, on small-integer data: all M, N, K
// edge cases, strided X and Y, bias and activations, 1 and 2 threads. Plus the packed layout's round trip
// and the dispatcher's choices and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/spmm24.h"
#include "tests/unit/test_util.h"
#include "util/error.h"

namespace sparse24 {
namespace {

using cpu::Activation;
using cpu::Spmm24Kernel;

struct Case {
  int64_t M, N, K;
  bool bias;
  Activation act;
};

// Inputs and the oracle's output for one case and weight dtype.
struct Problem {
  Case c;
  int64_t ldx, ldy;
  Sparse24 w;
  cpu::Packed24 packed;
  std::vector<float> xf, bias, w_scale, expect;
  std::vector<int8_t> xi;
  float x_scale = 0.5f;
};

Problem make_problem(DType wdtype, const Case& c, uint32_t seed, bool full_range_i8 = false) {
  Problem p{c, c.K + 3, c.N + 2, {}, {}, {}, {}, {}, {}, {}};
  Tensor dense = test::random_24_tensor(wdtype, c.N, c.K, seed);
  if (full_range_i8) {
    std::mt19937 rng(seed);
    for (int64_t i = 0; i < dense.numel(); ++i)
      if (dense.get(i) != 0.0f) dense.set(i, float(int(rng() % 256) - 128));
  }
  p.w = compress_24(dense);
  std::mt19937 rng(seed + 7);
  std::uniform_int_distribution<int> small(-7, 7);
  if (c.bias)
    for (int64_t n = 0; n < c.N; ++n) p.bias.push_back(float(small(rng)));
  const float* bias = c.bias ? p.bias.data() : nullptr;
  p.expect.assign(size_t(c.M * p.ldy), 0.0f);
  if (wdtype == DType::i8) {
    p.xi.resize(size_t(c.M * p.ldx));
    for (auto& x : p.xi) x = int8_t(full_range_i8 ? int(rng() % 256) - 128 : small(rng));
    for (int64_t n = 0; n < c.N; ++n) p.w_scale.push_back(0.25f + float(rng() % 1000) / 512.0f);
    reference::gemm_24_i8_scaled(c.M, p.xi.data(), p.ldx, p.x_scale, p.w, p.w_scale.data(), bias, c.act,
                                 p.expect.data(), p.ldy);
    p.packed = cpu::pack_24(p.w, p.w_scale);
  } else {
    p.xf.resize(size_t(c.M * p.ldx));
    for (auto& x : p.xf) x = float(small(rng));
    reference::gemm_24_f32(c.M, p.xf.data(), p.ldx, p.w, bias, c.act, p.expect.data(), p.ldy);
    p.packed = cpu::pack_24(p.w);
  }
  return p;
}

// Runs the kernel with `threads` into a Y pre-filled with a sentinel, so writes past N show up.
std::vector<float> run_kernel(const Spmm24Kernel& k, const Problem& p, int threads) {
  std::vector<float> y(size_t(p.c.M * p.ldy), -12345.0f);
  cpu::Spmm24Args a;
  a.M = p.c.M;
  a.X = p.xi.empty() ? static_cast<const void*>(p.xf.data()) : static_cast<const void*>(p.xi.data());
  a.ldx = p.ldx;
  a.x_scale = p.x_scale;
  a.W = &p.packed;
  a.bias = p.c.bias ? p.bias.data() : nullptr;
  a.act = p.c.act;
  a.Y = y.data();
  a.ldy = p.ldy;
  cpu::spmm24_run(k, a, threads);
  return y;
}

// `two_threads`: also run on 2 threads and require the very same bits.
void check_case(const Spmm24Kernel& k, const Case& c, uint32_t seed, bool full_range_i8 = false,
                bool two_threads = true) {
  const Problem p = make_problem(k.weight_dtype, c, seed, full_range_i8);
  const std::string where =
      fmt::format("{} M={} N={} K={} bias={} act={}", k.name, c.M, c.N, c.K, c.bias, int(c.act));
  bool any_nonzero = false;
  const std::vector<float> y1 = run_kernel(k, p, 1);
  for (int64_t m = 0; m < c.M; ++m) {
    for (int64_t n = 0; n < p.ldy; ++n) {
      const float got = y1[size_t(m * p.ldy + n)], want = p.expect[size_t(m * p.ldy + n)];
      if (n >= c.N) {
        ASSERT_EQ(got, -12345.0f) << where << ": wrote past N at m=" << m << " n=" << n;
        continue;
      }
      any_nonzero |= want != 0.0f;
      if (c.act == Activation::gelu)
        ASSERT_LE(std::fabs(got - want), 1e-6f * std::fabs(want)) << where << " m=" << m << " n=" << n;
      else
        ASSERT_EQ(got, want) << where << " m=" << m << " n=" << n;
    }
  }
  // All zero after a ReLU or ReLU6 still tests the clamp, as long as the sums before it were not zero.
  if (!any_nonzero && (c.act == Activation::relu || c.act == Activation::relu6)) {
    Case before = c;
    before.act = Activation::none;
    const Problem q = make_problem(k.weight_dtype, before, seed, full_range_i8);
    any_nonzero = std::any_of(q.expect.begin(), q.expect.end(), [](float v) { return v != 0.0f; });
  }
  ASSERT_TRUE(any_nonzero) << where << ": the reference output is all zero, the case tests nothing";
  if (!two_threads) return;
  const std::vector<float> y2 = run_kernel(k, p, 2);
  ASSERT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 4), 0) << where << ": 2 threads differ from 1";
}

}  // namespace

namespace cpu {
// gtest prints the kernel by name, not as bytes.
void PrintTo(const Spmm24Kernel& k, std::ostream* os) {
  *os << k.name;
}
}  // namespace cpu

namespace {

class Spmm24KernelTest : public ::testing::TestWithParam<Spmm24Kernel> {
 protected:
  void SetUp() override {
    if (!cpu::cpu_supports(GetParam().isa))
      GTEST_SKIP() << GetParam().name << " needs " << cpu::isa_name(GetParam().isa) << ", this CPU has "
                   << cpu::isa_name(cpu::detect_cpu_isa());
  }
};

// The AVX-512 GEMM's panel cuts (spmm24_panel.h): 16 a 16-row panel, 33 a 32-row and a 16-row one, 80 a
// 64-row and a 16-row, 96 a 64-row and a 32-row, 112 all three heights.
const int64_t kMs[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 33, 80, 96, 112, 128};
const int64_t kNs[] = {1, 3, 8, 15, 16, 17, 64, 384};

// Full cross product of M and N for the small K; the epilogue rotates over the cases so each K and each M
// meets every epilogue.
TEST_P(Spmm24KernelTest, small_k_every_m_and_n) {
  const Case epilogues[] = {{0, 0, 0, false, Activation::none}, {0, 0, 0, true, Activation::none},
                            {0, 0, 0, true, Activation::relu},  {0, 0, 0, false, Activation::relu},
                            {0, 0, 0, true, Activation::relu6}, {0, 0, 0, false, Activation::relu6}};
  int i = 0;
  for (int64_t K : {4, 8, 12, 20, 64})
    for (int64_t M : kMs)
      for (int64_t N : kNs) {
        Case c = epilogues[i % 6];
        c.M = M, c.N = N, c.K = K;
        // Every fourth case also on 2 threads (the large-K cases all are), to keep the sanitizer run short.
        check_case(GetParam(), c, uint32_t(1000 + i), false, i % 4 == 0);
        ++i;
        if (HasFatalFailure()) return;
      }
}

// 300: 75 groups, two whole 32-group K blocks of the 64-row panel and a short one.
TEST_P(Spmm24KernelTest, large_k_subset) {
  int i = 0;
  for (int64_t K : {300, 768, 3072})
    for (int64_t M : {1, 3, 4, 5, 9, 33, 96, 200})  // 200: on 2 threads 96 and 104 rows (spmm24_run)
      for (int64_t N : {1, 17, 64}) {
        const Activation act = i % 3 == 0   ? Activation::relu
                               : i % 3 == 1 ? Activation::relu6
                                            : Activation::none;
        check_case(GetParam(), {M, N, K, i % 2 == 0, act}, uint32_t(5000 + i++));
        if (HasFatalFailure()) return;
      }
}

TEST_P(Spmm24KernelTest, gelu_within_1e6_relative) {
  for (int64_t M : {1, 5, 9})
    for (int64_t K : {12, 64}) {
      check_case(GetParam(), {M, 17, K, true, Activation::gelu}, uint32_t(7000 + M * 100 + K));
      if (HasFatalFailure()) return;
    }
}

// Kernels that read convolution patches in place against the reference on the explicit im2col rows
// (channels-last input, K ordered kernel row, kernel column, channel), over strides, dilations, padding that
// leaves the image, and row ranges that start mid-image, on 1 and 2 threads.
class Spmm24PatchKernelTest : public Spmm24KernelTest {};

std::vector<Spmm24Kernel> patch_kernels() {
  std::vector<Spmm24Kernel> out;
  for (const Spmm24Kernel& k : cpu::spmm24_kernels())
    if (k.patches) out.push_back(k);
  return out;
}

TEST_P(Spmm24PatchKernelTest, convolution_patches_match_im2col) {
  const Spmm24Kernel& k = GetParam();
  struct Geometry {
    int64_t N, H, W, C, KH, KW, stride, dilation, pad, OC, stride_h = 0;  // stride_h 0: `stride`
  };
  const Geometry geometries[] = {{2, 7, 9, 8, 3, 3, 1, 1, 1, 17},    // 2 images of 63 pixels, a 3x3 kernel
                                 {1, 12, 10, 4, 3, 2, 2, 1, 0, 16},  // stride 2, a 3x2 kernel
                                 {3, 6, 6, 12, 2, 2, 1, 2, 2, 40},   // dilation 2, padding past the kernel
                                 // K = 324: the kernels' K blocks (128 or 256 k) end inside a kernel position
                                 {1, 9, 11, 36, 3, 3, 1, 1, 1, 24},
                                 // The CNN's convolution at batch 1 (196 rows: panels and a tail per
                                 // thread), and images of 9 pixels (a store block spans several)
                                 {1, 14, 14, 64, 3, 3, 1, 1, 1, 64},
                                 {9, 3, 3, 8, 3, 3, 1, 1, 1, 16},
                                 // Enough images for image blocks (image_block_lanes): one block, two
                                 // with the last not full, too many empty lanes (then the rows from the
                                 // second image on: 32), stride 2 down the image, dilation, and K = 576 (the
                                 // CNN's 3x3 convolution on 64 channels)
                                 {16, 5, 6, 8, 3, 3, 1, 1, 1, 24},
                                 {31, 4, 3, 64, 3, 3, 1, 1, 1, 16},
                                 {33, 4, 5, 12, 3, 3, 1, 2, 2, 17},
                                 {32, 7, 6, 16, 3, 2, 1, 1, 1, 33, 2},
                                 // Two calls whose padded copies have the same size, the second with a
                                 // border where the first had image: the border must be zeros again
                                 {16, 7, 7, 8, 3, 3, 1, 1, 0, 16},
                                 {16, 5, 5, 8, 3, 3, 1, 1, 1, 16},
                                 // 3-wide "same" kernels on narrow and wide images: one pixel per row
                                 // (every pixel at both row ends), two, and rows wider than any panel
                                 {3, 4, 1, 4, 3, 3, 1, 1, 1, 16},
                                 {2, 5, 2, 8, 1, 3, 1, 1, 1, 16},
                                 {1, 3, 70, 4, 3, 3, 1, 1, 1, 20},
                                 // Stride-1 "same" convolutions pack from a channel-planar copy of the
                                 // input (planar_patches): 8 images of the CNN's are too few for image
                                 // blocks and span three copies (planar_run_rows: 640 rows each), a 5x5
                                 // kernel, a dilated 3x3, and a 1x1 one (no copy)
                                 {8, 14, 14, 64, 3, 3, 1, 1, 1, 16},
                                 {2, 9, 7, 8, 5, 5, 1, 1, 2, 16},
                                 {2, 7, 6, 8, 3, 3, 1, 2, 2, 16},
                                 {1, 6, 5, 12, 1, 1, 1, 1, 0, 16}};
  uint32_t seed = 300;
  for (const Geometry& g : geometries) {
    cpu::ConvPatches c;
    c.N = g.N, c.H = g.H, c.W = g.W, c.C = g.C, c.KH = g.KH, c.KW = g.KW;
    const int64_t stride_h = g.stride_h ? g.stride_h : g.stride;
    c.stride_h = stride_h, c.stride_w = g.stride, c.dilation_h = c.dilation_w = g.dilation,
    c.pad_top = c.pad_left = g.pad;
    c.OH = (g.H + 2 * g.pad - g.dilation * (g.KH - 1) - 1) / stride_h + 1;
    c.OW = (g.W + 2 * g.pad - g.dilation * (g.KW - 1) - 1) / g.stride + 1;
    const int64_t K = g.KH * g.KW * g.C, pixels = g.N * c.OH * c.OW;
    std::mt19937 rng(seed++);
    std::vector<float> x(size_t(g.N * g.H * g.W * g.C));
    for (float& v : x) v = float(int(rng() % 15) - 7);
    c.x = x.data();
    // The im2col rows the patches stand for.
    std::vector<float> cols(size_t(pixels * K), 0.0f);
    for (int64_t p = 0; p < pixels; ++p) {
      const int64_t n = p / (c.OH * c.OW), oh = p / c.OW % c.OH, ow = p % c.OW;
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const int64_t ih = oh * stride_h - g.pad + kh * g.dilation,
                        iw = ow * g.stride - g.pad + kw * g.dilation;
          if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
          for (int64_t ch = 0; ch < g.C; ++ch)
            cols[size_t(p * K + (kh * g.KW + kw) * g.C + ch)] =
                x[size_t(((n * g.H + ih) * g.W + iw) * g.C + ch)];
        }
    }
    const Sparse24 w = compress_24(test::random_24_tensor(k.weight_dtype, g.OC, K, seed++));
    const cpu::Packed24 packed = cpu::pack_24(w);
    std::vector<float> bias(size_t(g.OC));
    for (float& b : bias) b = float(int(rng() % 9) - 4);
    // Rows: all; from mid-image; a few; whole images from the second on.
    const int64_t image = c.OH * c.OW;
    for (const auto& [row0, M] : {std::pair<int64_t, int64_t>{0, pixels},
                                  {5, pixels - 5},
                                  {3, 9},
                                  {2, 6},
                                  {std::min(image, pixels - 1), std::max(pixels - image, int64_t(1))}}) {
      std::vector<float> want(size_t(M * g.OC));
      reference::gemm_24_f32(M, cols.data() + row0 * K, K, w, bias.data(), Activation::relu, want.data(),
                             g.OC);
      for (int threads : {1, 2}) {
        std::vector<float> got(size_t(M * g.OC), -12345.0f);
        cpu::Spmm24Args a;
        a.M = M;
        a.W = &packed;
        a.bias = bias.data();
        a.act = Activation::relu;
        a.Y = got.data();
        a.ldy = g.OC;
        a.patches = &c;
        a.patch_row0 = row0;
        cpu::spmm24_run(k, a, threads);
        const std::string where =
            fmt::format("{} {} images {}x{} stride {} dilation {} rows [{}, {}) threads {}{}", k.name, g.N,
                        g.KH, g.KW, g.stride, g.dilation, row0, row0 + M, threads,
                        cpu::image_block_lanes(a, k.image_lanes) ? " (image blocks)" : "");
        ASSERT_EQ(got, want) << where;
        // A second phase (Spmm24Args::then) sees all of Y, however the threads split the call.
        std::atomic<int> phases = 0;
        std::atomic<bool> complete = true;
        a.then = [&](int, int) {
          ++phases;
          if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0) complete = false;
        };
        std::fill(got.begin(), got.end(), -12345.0f);
        cpu::spmm24_run(k, a, threads);
        EXPECT_TRUE(complete) << where << ": a second phase ran before Y was complete";
        EXPECT_GE(phases, 1) << where;
        EXPECT_LE(phases, threads) << where;
        a.then = nullptr;
        // A residual added in the store, then ReLU: relu(relu(conv + bias) + r).
        std::vector<float> residual(got.size());
        for (float& r : residual) r = float(int(rng() % 31) - 15);
        a.residual = residual.data();
        a.residual_relu = true;
        cpu::spmm24_run(k, a, threads);
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(got[i], std::max(want[i] + residual[i], 0.0f)) << where << " with a residual, at " << i;
        // Summed per image into a pool (a GlobalAveragePool's sums), pool row j for the image of row
        // row0 + j, whichever way the call is split: image blocks, rows of each image between the threads,
        // rows across images, or the tail's rows.
        const int64_t per_image = c.OH * c.OW, first = row0 / per_image;
        const int64_t images = (row0 + M - 1) / per_image - first + 1;
        std::vector<float> pool(size_t(images * g.OC), 0.0f), want_pool(pool.size(), 0.0f);
        a.pool = pool.data();
        ASSERT_TRUE(cpu::kernel_pools(k, a)) << where;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t o = 0; o < g.OC; ++o)
            want_pool[size_t(((row0 + m) / per_image - first) * g.OC + o)] +=
                std::max(want[size_t(m * g.OC + o)] + residual[size_t(m * g.OC + o)], 0.0f);
        a.Y = nullptr;
        cpu::spmm24_run(k, a, threads);
        ASSERT_EQ(pool, want_pool) << where << " pooled";
      }
    }
  }
}

// The int8 kernels again with values over the whole int8 range (the +128 shift and its row-sum correction).
class Spmm24I8KernelTest : public Spmm24KernelTest {};

std::vector<Spmm24Kernel> i8_kernels() {
  std::vector<Spmm24Kernel> out;
  for (const Spmm24Kernel& k : cpu::spmm24_kernels())
    if (k.weight_dtype == DType::i8) out.push_back(k);
  return out;
}

TEST_P(Spmm24I8KernelTest, full_range_values) {
  for (int64_t M : {1, 4, 9})
    for (int64_t K : {20, 768}) {
      check_case(GetParam(), {M, 33, K, true, Activation::none}, uint32_t(9000 + M + K), true);
      if (HasFatalFailure()) return;
    }
}

// Spmm24Args::then: each thread of the call's team runs it once, and only after the whole of Y is stored
// (one thread, GEMV tiles split between threads, GEMM rows split between threads).
TEST_P(Spmm24KernelTest, second_phase_runs_once_per_thread_after_the_product) {
  const Spmm24Kernel& k = GetParam();
  for (int64_t M : {1, 40, 130})
    for (int threads : {1, 2}) {
      const Problem p = make_problem(k.weight_dtype, {M, 40, 64, true, Activation::relu}, uint32_t(600 + M));
      std::vector<float> y(size_t(M * p.ldy), -12345.0f);
      cpu::Spmm24Args a;
      a.M = M;
      a.X = p.xi.empty() ? static_cast<const void*>(p.xf.data()) : static_cast<const void*>(p.xi.data());
      a.ldx = p.ldx;
      a.x_scale = p.x_scale;
      a.W = &p.packed;
      a.bias = p.bias.data();
      a.act = Activation::relu;
      a.Y = y.data();
      a.ldy = p.ldy;
      std::vector<int> calls(4, 0), team(4, 0);
      std::vector<char> complete(4, 1);
      a.then = [&](int t, int T) {
        ++calls[size_t(t)];
        team[size_t(t)] = T;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < 40; ++n)
            if (y[size_t(m * p.ldy + n)] != p.expect[size_t(m * p.ldy + n)]) complete[size_t(t)] = 0;
      };
      cpu::spmm24_run(k, a, threads);
      const std::string where = fmt::format("{} M={} threads={}", k.name, M, threads);
      const int T = team[0];
      ASSERT_GE(T, 1) << where;
      ASSERT_LE(T, threads) << where;
      for (int t = 0; t < 4; ++t) {
        EXPECT_EQ(calls[size_t(t)], t < T ? 1 : 0) << where << " thread " << t;
        if (t < T) {
          EXPECT_EQ(team[size_t(t)], T) << where;
        }
        EXPECT_TRUE(complete[size_t(t)]) << where << ": thread " << t << " ran before Y was complete";
      }
    }
}

TEST_P(Spmm24KernelTest, rejects_a_weight_of_another_dtype) {
  const DType other = GetParam().weight_dtype == DType::f32 ? DType::bf16 : DType::f32;
  Problem p = make_problem(other, {2, 16, 8, false, Activation::none}, 1);
  std::vector<float> y(64);
  cpu::Spmm24Args a{2, p.xf.data(), p.ldx, 1.0f, &p.packed, nullptr, Activation::none, y.data(), 16};
  try {
    cpu::spmm24_run(GetParam(), a, 1);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("values"), std::string::npos) << e.what();
  }
}

// A NaN sum stays NaN through a fused ReLU or ReLU6, as in the Relu and Clip ops and onnxruntime: a NaN
// bias on one channel, every M path (GEMV, panels, tail), the other channels as the reference.
TEST_P(Spmm24KernelTest, fused_relu_keeps_nan) {
  for (const Activation act : {Activation::relu, Activation::relu6})
    for (const int64_t M : {1, 5, 33, 100}) {
      Problem p = make_problem(GetParam().weight_dtype, {M, 20, 64, true, act}, uint32_t(800 + M));
      p.bias[3] = std::numeric_limits<float>::quiet_NaN();
      const std::vector<float> y = run_kernel(GetParam(), p, 2);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < 20; ++n) {
          const float got = y[size_t(m * p.ldy + n)], want = p.expect[size_t(m * p.ldy + n)];
          if (n == 3)
            ASSERT_TRUE(std::isnan(got))
                << GetParam().name << " act " << int(act) << " M=" << M << " m=" << m;
          else
            ASSERT_EQ(got, want) << GetParam().name << " act " << int(act) << " M=" << M << " n=" << n;
        }
    }
}

// A panel GEMM runs its last few rows through the GEMV (panel_gemm's tail) and promises the same bits as a
// panel would give them: on real-valued data (where the order of the sums shows), rows 192.. of a 196-row
// call (three 64-row panels and a 4-row tail) against the same rows inside a 16-row call (one panel), with
// bias, ReLU and a residual, on 1 and 2 threads.
class Spmm24PanelKernelTest : public Spmm24KernelTest {};

std::vector<Spmm24Kernel> panel_kernels() {
  std::vector<Spmm24Kernel> out;
  for (const Spmm24Kernel& k : cpu::spmm24_kernels())
    if (k.panel_rows > 0) out.push_back(k);
  return out;
}

TEST_P(Spmm24PanelKernelTest, tail_rows_match_a_panel_bitwise) {
  const Spmm24Kernel& k = GetParam();
  const int64_t M = 196, N = 40, K = 300;
  Tensor dense = test::random_24_tensor(k.weight_dtype, N, K, 99);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  for (int64_t i = 0; i < dense.numel(); ++i)
    if (dense.get(i) != 0.0f) dense.set(i, real(rng));  // rounded to bf16 where the weight is bf16
  const cpu::Packed24 w = cpu::pack_24(compress_24(dense));
  std::vector<float> x(size_t(M * K)), bias(static_cast<size_t>(N)), residual(size_t(M * N));
  for (auto& v : x) v = real(rng);
  for (auto& v : bias) v = real(rng);
  for (auto& v : residual) v = real(rng);
  auto run = [&](int64_t m0, int64_t rows, int threads) {
    std::vector<float> y(size_t(rows * N));
    cpu::Spmm24Args a;
    a.M = rows, a.X = x.data() + m0 * K, a.ldx = K, a.W = &w, a.bias = bias.data();
    a.act = Activation::relu, a.Y = y.data(), a.ldy = N;
    a.residual = residual.data() + m0 * N, a.residual_relu = true;
    cpu::spmm24_run(k, a, threads);
    return y;
  };
  for (int threads : {1, 2}) {
    const std::vector<float> whole = run(0, M, threads), panel = run(180, 16, threads);
    EXPECT_EQ(std::memcmp(whole.data() + 192 * N, panel.data() + 12 * N, size_t(4 * N) * sizeof(float)), 0)
        << k.name << ", " << threads << " threads: the tail's rows differ from a panel's";
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, Spmm24KernelTest,
                         ::testing::ValuesIn(cpu::spmm24_kernels().begin(), cpu::spmm24_kernels().end()),
                         [](const auto& info) { return std::string(info.param.name); });
INSTANTIATE_TEST_SUITE_P(Registry, Spmm24I8KernelTest, ::testing::ValuesIn(i8_kernels()),
                         [](const auto& info) { return std::string(info.param.name); });
INSTANTIATE_TEST_SUITE_P(Registry, Spmm24PatchKernelTest, ::testing::ValuesIn(patch_kernels()),
                         [](const auto& info) { return std::string(info.param.name); });
INSTANTIATE_TEST_SUITE_P(Registry, Spmm24PanelKernelTest, ::testing::ValuesIn(panel_kernels()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Packed24, round_trip_is_exact) {
  for (DType dt : {DType::f32, DType::bf16, DType::i8})
    for (int64_t N : {1, 15, 16, 33})
      for (int64_t K : {4, 12, 64, 100}) {
        const Sparse24 w = compress_24(test::random_24_tensor(dt, N, K, uint32_t(N * 1000 + K)));
        const Sparse24 back = cpu::unpack_24(cpu::pack_24(w));
        ASSERT_EQ(back.dtype, w.dtype);
        ASSERT_EQ(back.rows, w.rows);
        ASSERT_EQ(back.cols, w.cols);
        ASSERT_EQ(back.layout, Layout24::portable);
        ASSERT_TRUE(back.values == w.values) << dtype_name(dt) << " N=" << N << " K=" << K;
        ASSERT_TRUE(back.meta == w.meta) << dtype_name(dt) << " N=" << N << " K=" << K;
      }
}

TEST(Packed24, rejects_f16_and_a_wrong_scale_count) {
  const Sparse24 f16 = compress_24(test::random_24_tensor(DType::f16, 4, 8, 1));
  EXPECT_THROW(cpu::pack_24(f16), Error);
  const Sparse24 i8 = compress_24(test::random_24_tensor(DType::i8, 4, 8, 1));
  EXPECT_THROW(cpu::pack_24(i8, {1.0f, 2.0f}), Error);
}

int64_t large_panel_rows(DType dt, cpu::Isa isa) {
  return cpu::choose_spmm24_kernel(dt, 4096, isa, 1).panel_rows;
}

TEST(Spmm24Dispatch, picks_gemv_for_small_m_and_gemm_above) {
  const cpu::Isa isa = cpu::detect_cpu_isa();
  for (DType dt : {DType::f32, DType::bf16, DType::i8}) {
    const Spmm24Kernel& small = cpu::choose_spmm24_kernel(dt, 1, isa);
    EXPECT_EQ(small.isa, isa);
    EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 1, cpu::Isa::ref).isa, cpu::Isa::ref);
    if (isa == cpu::Isa::ref) continue;
    ASSERT_GT(small.max_m, 0) << small.name;
    EXPECT_NE(std::string(small.name).find("gemv"), std::string::npos) << small.name;
    for (int threads : {1, 2, 4}) {
      EXPECT_EQ(&cpu::choose_spmm24_kernel(dt, 1, isa, threads), &small);
      // Whole panels for every thread: the GEMM kernel.
      const Spmm24Kernel& large = cpu::choose_spmm24_kernel(dt, 64 * 8 * threads, isa, threads);
      EXPECT_EQ(large.isa, isa);
      EXPECT_EQ(large.max_m, 0) << large.name;
      EXPECT_NE(std::string(large.name).find("gemm"), std::string::npos) << large.name;
      for (int64_t M = small.max_m + 1; M <= 300; ++M) {
        const Spmm24Kernel& k = cpu::choose_spmm24_kernel(dt, M, isa, threads);
        EXPECT_EQ(k.isa, isa);
        if (large.panel_rows == 0) {
          EXPECT_EQ(&k, &large) << "M=" << M;  // no padding: always the GEMM kernel
        }
      }
    }
    if (large_panel_rows(dt, isa) == 64) {
      // Measured cases (spmm24.cc, panel_row_cost): M = 112 runs as a 64-, a 32- and a 16-row panel, 96 as
      // a 64- and a 32-row one, 128 as two 64-row ones, with no padding.
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 112, isa, 1).max_m, 0);
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 96, isa, 1).max_m, 0);
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 128, isa, 1).max_m, 0);
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 192, isa, 2).max_m, 0);  // 96 rows each on 2 threads
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 256, isa, 2).max_m, 0);
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 112, isa, 2).max_m, 0);  // 56 rows each: a 64-row panel
      // 40 rows each: a 32-row panel and 8 tail rows (f32, 2 threads, 768x768: 0.142-0.146 against the
      // GEMV's 0.175-0.178 ms; in 16-row blocks, 32 and 48 rows, it took 0.187)
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 80, isa, 2).max_m, 0);
      EXPECT_EQ(&cpu::choose_spmm24_kernel(dt, 16, isa, 1), &small);  // counted as a 32-row panel
      // The last rows up to 8 run through the GEMV (panel_gemm's tail) and count as they are: M = 40 is a
      // 32-row panel and 8 tail rows, 66 a 64-row panel and 2 (f32 768x768, one thread: 0.139 against the
      // GEMV's 0.176 ms, 0.209 against 0.295).
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 40, isa, 1).max_m, 0);
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 66, isa, 1).max_m, 0);
      // Where the weights are too large to stay cached for the tail's second pass over them the tail counts
      // as the 16-row panel it replaces; since the panel prefetches its weights into L1 even 48 rows for 33
      // beat the GEMV kernel (f32 4096x4096: 3.86 against 4.22 ms; 11008x4096: 11.25 against 11.45).
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 33, isa, 1, int64_t(64) << 20).max_m, 0);
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 33, isa, 1).max_m, 0);
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 48, isa, 1).max_m, 0);  // a 32- and a 16-row panel
      // M = 32 fills the half-height panel: the GEMM kernel, and so does M = 24 since the panel prefetches
      // its weights into L1 (f32 768x768: 0.105 against the GEMV's 0.115 ms); M = 20 still pads too much.
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 32, isa, 1).max_m, 0);
      EXPECT_EQ(cpu::choose_spmm24_kernel(dt, 24, isa, 1).max_m, 0);
      EXPECT_EQ(&cpu::choose_spmm24_kernel(dt, 20, isa, 1), &small);
    }
  }
}

// The AVX2 GEMM computes 16-row panels and a last panel of at most 8 rows at half height; the choice needs
// no AVX2 CPU, only the registry. The measured cases of spmm24.cc (panel_cost): f32 stays on the GEMV
// kernel up to M = 12, bf16 up to M = 8, whether or not the weights stay cached.
TEST(Spmm24Dispatch, avx2_panels) {
  for (DType dt : {DType::f32, DType::bf16}) {
    const Spmm24Kernel& gemm = cpu::choose_spmm24_kernel(dt, 512, cpu::Isa::avx2, 1);
    ASSERT_EQ(gemm.panel_rows, 16) << gemm.name;
    ASSERT_TRUE(gemm.patches) << gemm.name;
    EXPECT_EQ(cpu::choose_spmm24_patch_kernel(dt, cpu::Isa::avx2), &gemm);
    const int64_t last_gemv = dt == DType::f32 ? 12 : 8;
    for (int64_t weight_bytes : {int64_t(0), int64_t(64) << 20})
      for (int64_t M = 1; M <= 64; ++M) {
        const Spmm24Kernel& k = cpu::choose_spmm24_kernel(dt, M, cpu::Isa::avx2, 1, weight_bytes);
        if (M <= last_gemv)
          EXPECT_GT(k.max_m, 0) << M;
        else
          EXPECT_EQ(&k, &gemm) << M << " " << weight_bytes;
      }
    for (int64_t M : {128, 512}) EXPECT_EQ(&cpu::choose_spmm24_kernel(dt, M, cpu::Isa::avx2, 1), &gemm) << M;
    // The same on two threads, each with a share of the tiles.
    EXPECT_GT(cpu::choose_spmm24_kernel(dt, last_gemv, cpu::Isa::avx2, 2).max_m, 0);
    EXPECT_EQ(&cpu::choose_spmm24_kernel(dt, 16, cpu::Isa::avx2, 2), &gemm);
  }
}

// The panels' K blocks fit their Xt and two weight slices in 41/48 of L1: the blocks measured on a 48 KiB
// L1, and the ones the rule gives a 32 KiB L1 (the tests run those too: ctest's unit_kernels_l1d_32k).
TEST(Spmm24PanelBlocks, fit_the_l1) {
  for (auto [rows, on_48k, on_32k] :
       {std::tuple<int64_t, int64_t, int64_t>{64, 32, 16}, {32, 48, 32}, {16, 64, 48}, {8, 96, 64}}) {
    EXPECT_EQ(cpu::panel_block_groups(rows, 48 << 10), on_48k) << rows << " rows";
    EXPECT_EQ(cpu::panel_block_groups(rows, 32 << 10), on_32k) << rows << " rows";
  }
  for (int64_t l1 : {int64_t(4) << 10, int64_t(32) << 10, int64_t(48) << 10, int64_t(1) << 20})
    for (int64_t rows : {8, 16, 32, 64}) {
      const int64_t groups = cpu::panel_block_groups(rows, l1);
      EXPECT_EQ(groups % 16, 0);
      EXPECT_GE(groups, 16);
      if (groups > 16) {
        EXPECT_LE(groups * (16 * rows + 2 * 136), l1 * 41 / 48) << rows << " rows, L1 " << l1;
      }
    }
}

TEST(Spmm24Dispatch, isa_override_from_the_environment) {
  const char* old = std::getenv("SPARSE24_ISA");
  const std::string saved = old ? old : "";
  setenv("SPARSE24_ISA", "ref", 1);
  EXPECT_EQ(cpu::active_isa(), cpu::Isa::ref);
  setenv("SPARSE24_ISA", "sse9", 1);
  EXPECT_THROW(cpu::active_isa(), Error);
  if (cpu::detect_cpu_isa() != cpu::Isa::avx512) {
    setenv("SPARSE24_ISA", "avx512", 1);
    EXPECT_THROW(cpu::active_isa(), Error);
  }
  if (old)
    setenv("SPARSE24_ISA", saved.c_str(), 1);
  else
    unsetenv("SPARSE24_ISA");
}

TEST(Spmm24Dispatch, only_panel_kernels_take_a_residual) {
  Problem p = make_problem(DType::f32, {2, 16, 8, false, Activation::none}, 3);
  std::vector<float> y(64), r(64);
  for (const Spmm24Kernel& k : cpu::spmm24_kernels()) {
    if (k.weight_dtype != DType::f32 || !cpu::cpu_supports(k.isa)) continue;
    cpu::Spmm24Args a{2, p.xf.data(), p.ldx, 1.0f, &p.packed, nullptr, Activation::none, y.data(), 16};
    a.residual = r.data();
    if (k.panel_rows == 0) {
      EXPECT_THROW(cpu::spmm24_run(k, a, 1), Error) << k.name;
    } else {
      EXPECT_NO_THROW(cpu::spmm24_run(k, a, 1)) << k.name;
      a.act = Activation::gelu;
      EXPECT_THROW(cpu::spmm24_run(k, a, 1), Error) << k.name << " with GELU";
    }
  }
}

TEST(Spmm24Dispatch, rejects_a_short_leading_dimension) {
  Problem p = make_problem(DType::f32, {2, 16, 8, false, Activation::none}, 3);
  std::vector<float> y(64);
  cpu::Spmm24Args a{2, p.xf.data(), 4, 1.0f, &p.packed, nullptr, Activation::none, y.data(), 16};
  EXPECT_THROW(cpu::spmm24(a, 1), Error);
}

}  // namespace
}  // namespace sparse24
