// The numbers the CPU kernels are judged against: memory read bandwidth (one and all threads, a cold buffer
// far larger than the last-level cache), peak f32 FMA throughput (512-bit FMAs), and the rates of the 2:4
// kernels' inner steps (permute + FMA for the GEMV, load + FMA for the panel GEMM). Used by
// docs/performance.md. Times are per-thread CPU time, so other processes on a shared machine distort them
// less. Needs AVX-512F and no other part of sparse24.
#include <immintrin.h>
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

// CPU time of the calling thread: on a shared machine, time the thread spent descheduled does not count.
double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Sums a buffer with 512-bit loads, four independent chains (the sum keeps the loads alive).
__attribute__((target("avx512f"))) float read_sum(const float* p, size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (size_t i = 0; i < n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
    s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

// Median GB/s of reading `bytes` split over `threads` threads.
double read_gbs(const float* buf, size_t floats, int threads, volatile float* sink) {
  std::vector<double> gbs;
  for (int rep = 0; rep < 9; ++rep) {
    float total = 0.0f;
    double slowest = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : total) reduction(max : slowest)
    {
      const size_t per = floats / size_t(omp_get_num_threads()) / 64 * 64;
      const double t0 = thread_seconds();
      total += read_sum(buf + per * size_t(omp_get_thread_num()), per);
      slowest = thread_seconds() - t0;
    }
    gbs.push_back(double(floats) * 4 / slowest / 1e9);
    *sink = total;
  }
  std::sort(gbs.begin(), gbs.end());
  return gbs[gbs.size() / 2];
}

// 12 independent FMA chains per thread, enough to cover the FMA latency on two pipes.
__attribute__((target("avx512f,fma"))) float fma_loop(long iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (long i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  __m512 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

// The 2:4 GEMV step: a variable in-lane permute (vpermilps) feeding each FMA, 12 independent chains with
// their own controls; x changes every iteration so no permute can be hoisted.
__attribute__((target("avx512f,fma"))) float permute_fma_loop(long iters) {
  __m512 acc[12];
  __m512i ctrl[12];
  for (int i = 0; i < 12; ++i) {
    acc[i] = _mm512_set1_ps(float(i));
    ctrl[i] = _mm512_set1_epi32(i * 7 + 1);
  }
  __m512 x = _mm512_set1_ps(1.0f);
  const __m512 w = _mm512_set1_ps(0.999f);
  for (long i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+v"(x));
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_fmadd_ps(_mm512_permutevar_ps(x, ctrl[j]), w, acc[j]);
  }
  __m512 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

// The panel GEMM's step (kernels/cpu/spmm24_panel.h): every FMA reads its own 64-byte line of an
// L1-resident buffer (16 KiB, as a 64-row panel's Xt block on a 32 KiB L1), 16 independent sums. A core
// whose L1 delivers fewer 512-bit loads per cycle than it retires FMAs runs this below its FMA peak, and
// the 2:4 GEMM with it.
__attribute__((target("avx512f,fma"))) float load_fma_loop(const float* l1, long iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  const __m512 w = _mm512_set1_ps(0.999f);
  for (long i = 0; i < iters; ++i) {
    const float* p = l1 + (i & 15) * 16 * 16;  // 16 lines per iteration, 256 lines in all
    __asm__ volatile("" : "+r"(p));
    for (int j = 0; j < 16; ++j) acc[j] = _mm512_fmadd_ps(w, _mm512_load_ps(p + 16 * j), acc[j]);
  }
  __m512 s = acc[0];
  for (int j = 1; j < 16; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_reduce_add_ps(s);
}

// GFLOP/s of load_fma_loop on one thread.
double load_fma_gflops(volatile float* sink) {
  const long iters = 10'000'000;
  float* l1 = static_cast<float*>(std::aligned_alloc(64, 16384));
  for (int i = 0; i < 4096; ++i) l1[i] = 1e-3f;
  std::vector<double> gf;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = thread_seconds();
    *sink = load_fma_loop(l1, iters);
    gf.push_back(double(iters) * 16 * 32 / (thread_seconds() - t0) / 1e9);
  }
  std::free(l1);
  std::sort(gf.begin(), gf.end());
  return gf[gf.size() / 2];
}

// Billions of (permute, FMA) pairs per second on one thread.
double permute_fma_pairs(volatile float* sink) {
  const long iters = 20'000'000;
  std::vector<double> rate;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = thread_seconds();
    *sink = permute_fma_loop(iters);
    rate.push_back(double(iters) * 12 / (thread_seconds() - t0) / 1e9);
  }
  std::sort(rate.begin(), rate.end());
  return rate[rate.size() / 2];
}

double fma_gflops(int threads, volatile float* sink) {
  const long iters = 20'000'000;
  std::vector<double> gf;
  for (int rep = 0; rep < 5; ++rep) {
    float total = 0.0f;
    double slowest = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : total) reduction(max : slowest)
    {
      const double t0 = thread_seconds();
      total += fma_loop(iters);
      slowest = thread_seconds() - t0;
    }
    gf.push_back(double(iters) * 12 * 32 * threads / slowest / 1e9);
    *sink = total;
  }
  std::sort(gf.begin(), gf.end());
  return gf[gf.size() / 2];
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx512f")) {
    std::fprintf(stderr, "s24_roofline: this probe needs AVX-512F\n");
    return 1;
  }
  volatile float sink = 0.0f;
  const size_t floats = size_t(512) << 20 >> 2;  // 512 MiB, far past any last-level cache
  float* buf = static_cast<float*>(std::aligned_alloc(64, floats * 4));
  for (size_t i = 0; i < floats; ++i) buf[i] = 1.0f;
  const int max_threads = omp_get_max_threads();
  for (int t = 1; t <= max_threads; ++t)
    std::printf("memory read, %d thread%s: %.1f GB/s\n", t, t > 1 ? "s" : " ",
                read_gbs(buf, floats, t, &sink));
  for (int t = 1; t <= max_threads; ++t)
    std::printf("f32 FMA peak, %d thread%s: %.1f GFLOP/s\n", t, t > 1 ? "s" : " ", fma_gflops(t, &sink));
  std::printf(
      "vpermilps + FMA pairs, 1 thread: %.2f G/s (each pair: 16 useful multiply-adds of a 2:4 GEMV)\n",
      permute_fma_pairs(&sink));
  std::printf("FMAs each loading an L1 line, 1 thread: %.1f GFLOP/s (the 2:4 panel GEMM's step)\n",
              load_fma_gflops(&sink));
  std::free(buf);
  return 0;
}
