// The two numbers the CPU kernels are judged against: memory read bandwidth (one and all threads, cold
// buffers far larger than the last-level cache) and peak f32 FMA throughput per core. Prints both; used by
// docs/performance.md. Built for AVX-512 and AVX2 (run-time choice); needs no other part of sparse24.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const size_t per = floats / size_t(omp_get_num_threads()) / 64 * 64;
      total += read_sum(buf + per * size_t(omp_get_thread_num()), per);
    }
    gbs.push_back(double(floats) * 4 / seconds_since(t0) / 1e9);
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

double fma_gflops(int threads, volatile float* sink) {
  const long iters = 20'000'000;
  std::vector<double> gf;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += fma_loop(iters);
    gf.push_back(double(iters) * 12 * 32 * threads / seconds_since(t0) / 1e9);
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
  std::free(buf);
  return 0;
}
