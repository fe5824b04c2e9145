#include "kernels/cpu/spmm24.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace sparse24::cpu {

#define S24_SPMM24_KERNEL(fn_name, isa, dtype, max_m, panel_rows, patches) \
  void fn_name(const Spmm24Args& args, int64_t tile_begin, int64_t tile_end);
#include "kernels/cpu/spmm24_kernels.inc"
#undef S24_SPMM24_KERNEL

namespace {

constexpr Spmm24Kernel kKernels[] = {
#define S24_SPMM24_KERNEL(fn_name, isa, dtype, max_m, panel_rows, patches) \
  {#fn_name, Isa::isa, DType::dtype, max_m, panel_rows, patches != 0, &fn_name},
#include "kernels/cpu/spmm24_kernels.inc"
#undef S24_SPMM24_KERNEL
};

void validate(const Spmm24Kernel& k, const Spmm24Args& a) {
  if (!cpu_supports(k.isa))
    fail("kernel {} needs {}, but this CPU supports at most {}", k.name, isa_name(k.isa),
         isa_name(detect_cpu_isa()));
  if (!a.W) fail("{}: no weight given", k.name);
  const Packed24& W = *a.W;
  if (W.dtype != k.weight_dtype)
    fail("{}: the packed weight holds {} values, the kernel reads {}", k.name, dtype_name(W.dtype),
         dtype_name(k.weight_dtype));
  if (a.M < 1) fail("{}: M must be at least 1, got {}", k.name, a.M);
  if (a.patches) {
    const ConvPatches& p = *a.patches;
    if (!k.patches) fail("{} does not read convolution patches", k.name);
    if (!p.x || p.KH * p.KW * p.C != W.cols)
      fail("{}: patches of {}x{}x{} do not make K = {}", k.name, p.KH, p.KW, p.C, W.cols);
    if (a.patch_row0 < 0 || a.patch_row0 + a.M > p.N * p.OH * p.OW)
      fail("{}: patch rows [{}, {}) outside the {} output pixels", k.name, a.patch_row0, a.patch_row0 + a.M,
           p.N * p.OH * p.OW);
  } else {
    if (!a.X) fail("{}: X must not be null", k.name);
    if (a.ldx < W.cols) fail("{}: ldx {} is smaller than K {}", k.name, a.ldx, W.cols);
  }
  if (!a.Y) fail("{}: Y must not be null", k.name);
  if (a.residual && k.panel_rows == 0)
    fail("{} does not add a residual (only panel GEMM kernels do)", k.name);
  if (a.residual && a.act == Activation::gelu)
    fail("{}: a residual cannot follow GELU in the kernel", k.name);
  if (a.ldy < W.rows) fail("{}: ldy {} is smaller than N {}", k.name, a.ldy, W.rows);
}

}  // namespace

std::span<const Spmm24Kernel> spmm24_kernels() {
  return kKernels;
}

// Rows a panel GEMM kernel computes for M rows: whole panels, except that a last panel of at most half the
// height runs at half height (the AVX-512 kernels' 32-row and the AVX2 kernels' 8-row panel).
int64_t padded_panel_rows(int64_t M, int64_t panel_rows) {
  const int64_t tail = M % panel_rows, half = panel_rows / 2;
  return M - tail + (tail == 0 ? 0 : tail <= half ? half : panel_rows);
}

// spmm24_run gives each thread of a GEMM kernel whole blocks of this many rows of X when there are at least
// as many blocks as threads (a multiple of every panel height, so the panels are those of one thread).
constexpr int64_t kThreadBlockRows = 64;

// Rows of X the busiest thread gives a panel GEMM kernel in spmm24_run: whole row blocks when there are at
// least as many blocks as threads, else a share of every panel (the split over tiles).
double panel_rows_per_thread(int64_t M, int64_t panel_rows, int threads) {
  if (threads == 1) return double(padded_panel_rows(M, panel_rows));
  const int64_t blocks = (M + kThreadBlockRows - 1) / kThreadBlockRows;
  if (blocks >= threads) return double(kThreadBlockRows * ((blocks + threads - 1) / threads));
  return double(padded_panel_rows(M, panel_rows)) / threads;
}

// A full panel row costs this fraction of a GEMV row (AVX-512 f32, 1024x1024 and 768x3072, 1 and 2 threads:
// 285-298 against 255-263 effective GFLOP/s per thread; a 32-row panel at M = 32, 0.82-0.83; measured on
// Zen 5).
constexpr double kPanelRowCost = 0.89;

// Above this many packed bytes, a GEMV kernel keeps the M it is listed for: it reads the weights once, in
// order, while a panel GEMM with a single panel visits every tile's slice of each K block in turn and, with
// the weights in memory, waits on them (f32, M = 32, one thread, against the GEMV: 1.66-1.72x oneDNN
// against 1.51-1.54x up to 4096x2048 (17.6 MB packed); 1.26 against 1.50 at 4096x4096 (35 MB), 1.21
// against 1.51 at 11008x4096).
constexpr int64_t kGemvStreamBytes = int64_t(24) << 20;

const Spmm24Kernel& choose_spmm24_kernel(DType weight_dtype, int64_t M, Isa isa, int threads,
                                         int64_t weight_bytes) {
  const Spmm24Kernel *gemv = nullptr, *gemm = nullptr;
  for (const Spmm24Kernel& k : kKernels) {
    if (k.weight_dtype != weight_dtype || uint8_t(k.isa) > uint8_t(isa)) continue;
    // The highest ISA of each kind.
    const Spmm24Kernel*& slot = k.max_m != 0 ? gemv : gemm;
    if (!slot || uint8_t(k.isa) > uint8_t(slot->isa)) slot = &k;
  }
  if (!gemm) fail("no 2:4 CPU kernel takes {} weights", dtype_name(weight_dtype));
  // A GEMV kernel of a lower ISA than the GEMM kernel is never preferred.
  if (!gemv || gemv->isa != gemm->isa) return *gemm;
  threads = std::max(1, threads);
  if (gemm->panel_rows == 0) return M <= gemv->max_m ? *gemv : *gemm;
  if (M <= gemv->max_m && weight_bytes > kGemvStreamBytes) return *gemv;
  // Otherwise the GEMV kernel wherever the panels' padding costs more than its rows (all M up to 24).
  if (kPanelRowCost * panel_rows_per_thread(M, gemm->panel_rows, threads) > double(M) / threads) return *gemv;
  return *gemm;
}

const Spmm24Kernel* choose_spmm24_patch_kernel(DType weight_dtype, Isa isa) {
  const Spmm24Kernel* best = nullptr;
  for (const Spmm24Kernel& k : kKernels)
    if (k.patches && k.weight_dtype == weight_dtype && uint8_t(k.isa) <= uint8_t(isa) &&
        (!best || uint8_t(k.isa) > uint8_t(best->isa)))
      best = &k;
  return best;
}

// Below both of these a call runs on one thread: waking a second costs more than it saves (a fork and join
// is about 0.4 us here; f32 64x64, M = 1: 0.51 us on one thread, 0.90 on two; M = 8: 0.64 against 0.97;
// 128x128, M = 8: 2.2 against 2.4 us; measured on Zen 5).
constexpr int64_t kParallelMinMacs = int64_t(1) << 17;          // kept multiply-adds, M * N * K / 2
constexpr int64_t kParallelMinWeightBytes = int64_t(64) << 10;  // below this the weights are no stream

void spmm24_run(const Spmm24Kernel& kernel, const Spmm24Args& args, int threads) {
  validate(kernel, args);
  if (threads <= 0) threads = omp_get_max_threads();
  if (args.M * args.W->rows * args.W->cols / 2 < kParallelMinMacs &&
      args.W->stream_bytes() < kParallelMinWeightBytes)
    threads = 1;
  const int64_t tiles = args.W->tiles;
  // GEMM kernels at large M: whole 64-row blocks per thread. Each thread then packs only its own rows of X
  // and reuses the weights across its panels, where a split over tiles would pack every row twice. The
  // panels are those of a one-thread run, so the results do not change.
  const int64_t blocks = (args.M + kThreadBlockRows - 1) / kThreadBlockRows;
  if (kernel.max_m == 0 && threads > 1 && blocks >= 2) {
    const int nt = int(std::min<int64_t>(threads, blocks));
#pragma omp parallel num_threads(nt)
    {
      const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t m0 = std::min(args.M, kThreadBlockRows * (blocks * t / n));
      const int64_t m1 = std::min(args.M, kThreadBlockRows * (blocks * (t + 1) / n));
      if (m0 < m1) {
        Spmm24Args part = args;
        part.M = m1 - m0;
        const int64_t x_bytes = args.W->dtype == DType::i8 ? 1 : 4;  // int8 or f32 activations
        if (args.patches)
          part.patch_row0 = args.patch_row0 + m0;
        else
          part.X = static_cast<const std::byte*>(args.X) + m0 * args.ldx * x_bytes;
        part.Y = args.Y + m0 * args.ldy;
        if (args.residual) part.residual = args.residual + m0 * args.ldy;
        kernel.fn(part, 0, tiles);
      }
    }
    return;
  }
  // Whole pairs of tiles per thread, so the kernels' two-tile blocks stay intact.
  const int64_t pairs = (tiles + 1) / 2;
  threads = int(std::min<int64_t>(threads, pairs));
  if (threads <= 1) {
    kernel.fn(args, 0, tiles);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = std::min(tiles, 2 * (pairs * t / nt));
    const int64_t end = std::min(tiles, 2 * (pairs * (t + 1) / nt));
    if (begin < end) kernel.fn(args, begin, end);
  }
}

void spmm24(const Spmm24Args& args, int threads) {
  if (!args.W) fail("spmm24: no weight given");
  if (threads <= 0) threads = omp_get_max_threads();
  spmm24_run(choose_spmm24_kernel(args.W->dtype, args.M, active_isa(), threads, args.W->stream_bytes()), args,
             threads);
}

float gelu_erf(float x) {
  return float(0.5 * double(x) * (1.0 + std::erf(double(x) / std::sqrt(2.0))));
}

}  // namespace sparse24::cpu
