#include "kernels/cpu/spmm24.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "util/error.h"

namespace sparse24::cpu {

#define S24_SPMM24_KERNEL(fn_name, isa, dtype, max_m, panel_rows, min_panel_rows, patches, image_lanes) \
  void fn_name(const Spmm24Args& args, int64_t tile_begin, int64_t tile_end);
#include "kernels/cpu/spmm24_kernels.inc"
#undef S24_SPMM24_KERNEL

namespace {

constexpr Spmm24Kernel kKernels[] = {
#define S24_SPMM24_KERNEL(fn_name, isa, dtype, max_m, panel_rows, min_panel_rows, patches, image_lanes) \
  {#fn_name, Isa::isa, DType::dtype, max_m, panel_rows, min_panel_rows, patches != 0, image_lanes, &fn_name},
#include "kernels/cpu/spmm24_kernels.inc"
#undef S24_SPMM24_KERNEL
};

// The geometry image blocks take (image_block_lanes), whatever the number of images.
bool image_blocks_fit(const Spmm24Args& a, int64_t lanes) {
  if (!a.patches || lanes <= 0) return false;
  const ConvPatches& p = *a.patches;
  const int64_t pixels = p.OH * p.OW;
  if (p.C % 4 != 0 || p.C > kImageBlockMaxChannels || p.stride_w != 1 || a.patch_row0 % pixels != 0 ||
      a.M % pixels != 0)
    return false;
  const int64_t rows = (p.OH - 1) * p.stride_h + (p.KH - 1) * p.dilation_h + 1;
  const int64_t cols = (p.OW - 1) + (p.KW - 1) * p.dilation_w + 1;
  return rows * cols * kImageBlockMaxChannels * lanes * int64_t(sizeof(float)) <= kImageBlockMaxBytes;
}

void validate(const Spmm24Kernel& k, const Spmm24Args& a) {
  if (!cpu_supports(k.isa))
    fail("kernel {} needs {}, but this CPU supports at most {}", k.name, isa_name(k.isa),
         isa_name(detect_cpu_isa()));
  if (!a.W) fail("{}: no weight given", k.name);
  if (k.panel_rows > 0) l1d_bytes();  // a bad SPARSE24_L1D_BYTES throws here, not inside the threads
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
  if (!a.Y && !a.pool) fail("{}: Y must not be null", k.name);
  if (a.residual && k.panel_rows == 0)
    fail("{} does not add a residual (only panel GEMM kernels do)", k.name);
  if (a.residual && a.act == Activation::gelu)
    fail("{}: a residual cannot follow GELU in the kernel", k.name);
  if (a.pool && a.act == Activation::gelu) fail("{}: a pool cannot follow GELU in the kernel", k.name);
  if (a.pool && a.then) fail("{}: a call sums into a pool or has a second phase, not both", k.name);
  if (a.image_row_end > 0 && (!image_blocks_fit(a, k.image_lanes) || a.image_row_begin < 0 ||
                              a.image_row_begin >= a.image_row_end || a.image_row_end > a.patches->OH))
    fail("{}: output rows [{}, {}) of each image, but the call does not run as image blocks there", k.name,
         a.image_row_begin, a.image_row_end);
  if (a.ldy < W.rows) fail("{}: ldy {} is smaller than N {}", k.name, a.ldy, W.rows);
}

}  // namespace

std::span<const Spmm24Kernel> spmm24_kernels() {
  return kKernels;
}

// Counting only Xt (a fixed 32 KiB), the AVX2 16-row panel's block was 128 groups and the AVX-512 32-row
// panel's 64, and their two weight slices (16 and 8 KiB each) evicted Xt from the 48 KiB L1. f32, one
// thread, weights from memory, ms before / after on Zen 5: AVX2 (16 rows) M = 128 768x3072 3.26-3.41 /
// 2.83-2.88, 384x1536 0.80-0.81 / 0.71-0.73, 4096x4096 23.5-24.3 / 20.0-20.9, 768x768 0.76-0.79 / 0.69-0.73,
// 1536x384 (one block either way) 0.71-0.74 / 0.71-0.75; AVX-512 (32 rows) M = 32 768x3072 0.391-0.392 /
// 0.372-0.380, 1536x384 0.101-0.102 / 0.096, 768x768 0.098-0.099 / 0.093-0.095, 4096x4096 2.87-2.90 /
// 2.79-2.86. The unrounded counts (53 and 79 groups) measured 1-3% slower than these, and 24 groups for 64
// rows 1-3% slower than 32. With Xt alone filling all of L1 (48 groups for 64 rows) a panel ran at 118
// against 164 GFLOP/s, which is what a fixed 32 KiB of Xt would be on a 32 KiB L1; the 32 KiB blocks here
// are derived from the rule, not measured (on this 48 KiB core they cost the 64-row panel 5-10% at M = 512).
int64_t panel_block_groups(int64_t panel_rows, int64_t l1d_bytes) {
  constexpr int64_t slice_group_bytes = 2 * kTileRows * int64_t(sizeof(float)) + int64_t(sizeof(uint64_t));
  const int64_t budget = l1d_bytes * 41 / 48;
  const int64_t per_group = 4 * panel_rows * int64_t(sizeof(float)) + 2 * slice_group_bytes;
  return std::max<int64_t>(16, budget / per_group / 16 * 16);
}

// What a panel of `height` rows costs, in rows of the GEMV kernel of the same ISA (see panel_gemm_cost).
// AVX-512: 0.68 of a GEMV row per panel row since the panel prefetches the next tile's kept values into L1
// (f32, one thread, 768x768 / 4096x4096, GEMV against GEMM ms: M = 20 0.099 / 2.57 against 0.102 / 3.00,
// M = 22 0.112 / 2.95 against 0.106 / 2.94, M = 24 0.115 / 3.11 against 0.105 / 3.03, M = 33 with the tail's
// weights uncached at 4096x4096 4.22 against 3.86 and at 11008x4096 11.45 against 11.25, M = 50 0.230 /
// 6.34 against 0.193 / 5.59, M = 81 0.358 / 10.0 against 0.289 / 8.72; bf16 alike: the GEMV at M = 20, the
// GEMM from 24). It was 0.85 with the prefetch into L2 only (M = 112 and 196 on 2 threads faster on the
// GEMM kernel, M = 80 on 2 threads in 16-row blocks on the GEMV kernel).
// AVX2: its two panel heights cost differently, and the GEMV kernel's cost steps with each block of 4 rows
// (gemv_cost). Measured on Zen 5 with the AVX2 kernels called directly, weights from memory, one thread, in
// GEMV 4-row blocks: f32 8-row panel 2.5 (768x768, 3072x768; 2.1 at 768x3072 and 4096x4096), 16-row panel
// 3.3 (2.9-3.0); bf16 2.3-2.4 and 2.5-2.7. So f32 M = 5-12 stays on the GEMV kernel (GEMM / GEMV time,
// 768x768 / 4096x4096: M = 8 1.31 / 1.06, M = 12 1.16 / 1.07) and from M = 13 takes the GEMM (M = 13 0.87 /
// 0.88, 16 0.86 / 0.85, 20 0.90 / 0.96); bf16 from M = 9 (M = 8 1.20 / 1.17, M = 9 0.93 / 0.94, M = 12 0.87
// / 0.85). (Before the GEMV kept each L2 block of weights for all its row blocks, f32 weights from memory
// took the GEMM from M = 5.) Since the panels' K blocks leave room in L1 for the weight slices
// (panel_block_groups), the f32 panels cost 2.6 and 3.0 blocks where K <= 768 and 1.8-1.9 and 2.1 where K >=
// 3072: at M = 10-12 the GEMM kernel is then 2-10% faster on the long-K shapes (768x3072, 4096x4096) and
// 3-50% slower on the short ones (768x768, 3072x768, 384x1536), so f32 keeps the GEMV kernel up to M = 12.
double panel_cost(const Spmm24Kernel& k, int64_t height) {
  if (k.isa != Isa::avx2) return 0.68 * double(height);
  const bool tall = height == k.panel_rows;
  const double blocks = k.weight_dtype == DType::bf16 ? (tall ? 2.6 : 2.3) : (tall ? 3.2 : 2.5);
  return 4.0 * blocks;  // GEMV 4-row blocks
}

// What M rows cost on a GEMV kernel, in its rows: on AVX2 each block of 4 rows takes as long as a full one.
double gemv_cost(const Spmm24Kernel& gemm, double rows) {
  return gemm.isa == Isa::avx2 ? 4.0 * std::ceil(rows / 4.0) : rows;
}

// What a panel GEMM kernel's M rows cost, as panel_gemm cuts them (next_panel_height): whole panels, then
// the last rows in the half-height panel, the half and the shortest one, or the shortest alone; the last
// rows up to half the shortest panel run through the GEMV (panel_gemm's tail) and count as GEMV rows where
// the weights stay cached for it (`cached_tail`), else on AVX-512 as the shortest panel (kTailCachedBytes).
// For M up to half the height this counts the half-height panel, which keeps those M on the GEMV kernel: a
// lone 16-row panel beat it where K is short but not where it is long (f32, one thread, M = 16: 768x768
// 0.077-0.081 against 0.090 ms, 3072x768 0.31-0.32 against 0.34, 768x3072 0.33-0.42 against 0.30; with one
// panel, each K block visits every tile's slice of the weights in turn).
double panel_gemm_cost(int64_t M, const Spmm24Kernel& k, bool cached_tail) {
  const int64_t tall = k.panel_rows, half = tall / 2, tiny = k.min_panel_rows < half ? k.min_panel_rows : 0;
  if (M <= half) return panel_cost(k, half);
  double cost = double(M / tall) * panel_cost(k, tall);
  for (int64_t left = M % tall; left > 0;) {
    // On AVX2 a tail from memory costs what a block of the GEMV kernel does, which reads them from memory
    // too (f32 4096x4096, M = 17: 16-row panel and tail 3.68 ms, the GEMV kernel 4.19).
    if (left <= k.min_panel_rows / 2 && (cached_tail || k.isa == Isa::avx2))
      return cost + (k.isa == Isa::avx2 ? gemv_cost(k, double(left)) : panel_cost(k, left));
    const int64_t height = next_panel_height(left, tall, tiny);
    cost += panel_cost(k, height);
    left -= std::min(height, left);
  }
  return cost;
}

// Above this many rows (and two threads or more) spmm24_run splits a GEMM kernel's rows between the threads
// in even shares, else its output tiles. Each thread then packs only its own rows of X and reuses the
// weights across its panels; with fewer rows than this, both streaming all the weights for one short panel
// each was slower than sharing the tiles (768x768, M = 32: 0.137 ms on two threads against 0.118 on one,
// split into 16-row halves). Even shares leave each thread the same last rows for its shorter panels and
// its tail: the CNN's 3x3 convolutions at batch 1, M = 196 on 2 threads, took 96 and 100 rows in 16-row
// blocks (the second thread's last 4 rows through the tail), and take 98 and 98 (2 each).
constexpr int64_t kRowSplitMinRows = 64;

// Rows [begin, end) of M that thread t of n takes in spmm24_run's split over rows.
std::pair<int64_t, int64_t> thread_rows(int64_t M, int64_t t, int64_t n) {
  return {M * t / n, M * (t + 1) / n};
}

// The busiest thread's share of a panel GEMM kernel's cost in spmm24_run: its own rows where spmm24_run
// splits rows, else a share of every panel (the split over tiles).
double panel_cost_per_thread(int64_t M, const Spmm24Kernel& k, int threads, bool cached_tail) {
  if (threads == 1 || M <= kRowSplitMinRows) return panel_gemm_cost(M, k, cached_tail) / threads;
  double most = 0;
  for (int t = 0; t < threads; ++t) {
    const auto [begin, end] = thread_rows(M, t, threads);
    most = std::max(most, panel_gemm_cost(end - begin, k, cached_tail));
  }
  return most;
}

// A panel GEMM's tail reads all the weights a second time. Up to this many bytes they are still in L3 from
// the panels before (f32, one thread, the GEMM kernel with its tail against the GEMV kernel: M = 36 3072x768,
// 5 MB, 0.498 against 0.638 ms); above they come from memory again, and the GEMV kernel, which reads them
// once, wins where the tail's rows would have padded a whole panel (M = 36 4096x4096, 36 MB: 1.25-1.32x
// oneDNN against 1.34-1.35x).
constexpr int64_t kTailCachedBytes = int64_t(16) << 20;

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
  // The GEMV kernel wherever the panels' padding costs more than its rows (M up to 21 on one thread). At
  // any weight size: since the panel prefetches the next tile's K slice, a single panel no longer waits on
  // weights in memory (f32, M = 32, against oneDNN, alternating runs: 4096x4096 1.83-1.89x against the
  // GEMV's 1.46-1.57x, 11008x4096 1.59-1.70 against 1.41-1.55, 4096x11008 1.73-1.81 against 1.37-1.41).
  const bool cached_tail = weight_bytes <= kTailCachedBytes;
  if (panel_cost_per_thread(M, *gemm, threads, cached_tail) > gemv_cost(*gemm, double(M)) / threads)
    return *gemv;
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

int64_t image_block_lanes(const Spmm24Args& a, int64_t lanes) {
  if (!image_blocks_fit(a, lanes)) return 0;
  if (a.image_row_end > 0) return lanes;  // a thread's part of a call spmm24_run runs as image blocks
  const int64_t images = a.M / (a.patches->OH * a.patches->OW);
  const int64_t empty = (images + lanes - 1) / lanes * lanes - images;
  return images >= lanes && 16 * empty <= images ? lanes : 0;
}

namespace {

// The threads spmm24_run gives a call: one for a tiny call (kParallelMinMacs).
int call_threads(const Spmm24Args& args, int threads) {
  if (threads <= 0) threads = omp_get_max_threads();
  if (args.M * args.W->rows * args.W->cols / 2 < kParallelMinMacs &&
      args.W->stream_bytes() < kParallelMinWeightBytes)
    threads = 1;
  return threads;
}

// Image blocks split between threads by whole blocks (else by each image's output rows).
bool split_image_blocks(const Spmm24Args& args, int64_t lanes, int threads) {
  const int64_t images = args.M / (args.patches->OH * args.patches->OW);
  return ((images + lanes - 1) / lanes) % threads == 0;
}

// Spmm24Args::then, by every thread of a call's team once all of them have stored their part of Y.
void then_phase(const Spmm24Args& args, int thread, int threads) {
  if (!args.then) return;
#pragma omp barrier
  args.then(thread, threads);
}

}  // namespace

bool kernel_pools(const Spmm24Kernel& kernel, const Spmm24Args& args) {
  return kernel.patches && kernel.panel_rows > 0 && args.patches && args.act != Activation::gelu;
}

namespace {

// Where threads share an image's output pixels, each sums them into a pool of its own, and after the team
// joins these are added into the call's pool in thread order (the same bits for the same thread count).
class PrivatePools {
 public:
  // Nothing is allocated for a call without a pool.
  PrivatePools(const Spmm24Args& args, int threads)
      : args_(args), pools_(args.pool ? size_t(threads) : 0), first_(pools_.size()) {}
  // Points part.pool at thread t's own zeroed pool, with a row for each image part's rows touch.
  void give(Spmm24Args& part, int t) {
    const int64_t pixels = args_.patches->OH * args_.patches->OW, first = part.patch_row0 / pixels;
    const int64_t images = (part.patch_row0 + part.M - 1) / pixels - first + 1;
    pools_[size_t(t)].assign(size_t(images * args_.ldy), 0.0f);
    first_[size_t(t)] = first - args_.patch_row0 / pixels;
    part.pool = pools_[size_t(t)].data();
  }
  void add_into_call() const {
    for (size_t t = 0; t < pools_.size(); ++t)
      for (size_t i = 0; i < pools_[t].size(); ++i)
        args_.pool[size_t(first_[t] * args_.ldy) + i] += pools_[t][i];
  }

 private:
  const Spmm24Args& args_;
  std::vector<std::vector<float>> pools_;
  std::vector<int64_t> first_;
};

}  // namespace

void spmm24_run(const Spmm24Kernel& kernel, const Spmm24Args& args, int threads) {
  validate(kernel, args);
  if (args.pool && !kernel_pools(kernel, args))
    fail("{}: only a patch GEMM kernel without GELU sums its outputs into a pool", kernel.name);
  threads = call_threads(args, threads);
  const int64_t tiles = args.W->tiles;
  // Image blocks: each thread its own blocks where they divide evenly, so it reads the images the layer
  // before wrote on its core (the CNN at batch 64, 2 threads: splitting each image's rows instead took the
  // stem before it from 0.16 to 0.25 ms and each 2:4 convolution from 1.30 to 1.35-1.45 ms, the images
  // then crossing between the cores); else every thread all the blocks and its share of each image's
  // output rows, which stays balanced for any number of blocks.
  if (const int64_t lanes = image_block_lanes(args, kernel.image_lanes); lanes > 0 && threads > 1) {
    const int64_t pixels = args.patches->OH * args.patches->OW, images = args.M / pixels;
    const int64_t blocks = (images + lanes - 1) / lanes, rows = args.patches->OH;
    const bool split_blocks = split_image_blocks(args, lanes, threads);
    const int team = split_blocks ? threads : int(std::min<int64_t>(threads, rows));
    PrivatePools pools(args, team);
#pragma omp parallel num_threads(team)
    {
      const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
      Spmm24Args part = args;
      if (split_blocks) {
        const int64_t i0 = std::min(images, lanes * (blocks * t / n));
        const int64_t i1 = std::min(images, lanes * (blocks * (t + 1) / n));
        part.M = (i1 - i0) * pixels;
        part.patch_row0 = args.patch_row0 + i0 * pixels;
        if (args.Y) part.Y = args.Y + i0 * pixels * args.ldy;  // (null where it pools)
        if (args.residual) part.residual = args.residual + i0 * pixels * args.ldy;
        if (args.pool) part.pool = args.pool + i0 * args.ldy;
        part.image_row_end = rows;  // image blocks even where this part's last block is not full
      } else {
        part.image_row_begin = rows * t / n;
        part.image_row_end = rows * (t + 1) / n;
        if (args.pool) pools.give(part, int(t));
      }
      if (part.M > 0 && part.image_row_begin < (part.image_row_end > 0 ? part.image_row_end : rows))
        kernel.fn(part, 0, tiles);
      then_phase(args, int(t), int(n));
    }
    if (args.pool && !split_blocks) pools.add_into_call();
    return;
  }
  // GEMM kernels at large M: each thread its own rows (kRowSplitMinRows).
  if (kernel.max_m == 0 && threads > 1 && args.M > kRowSplitMinRows) {
    PrivatePools pools(args, threads);
#pragma omp parallel num_threads(threads)
    {
      const auto [m0, m1] = thread_rows(args.M, omp_get_thread_num(), omp_get_num_threads());
      if (m0 < m1) {
        Spmm24Args part = args;
        part.M = m1 - m0;
        const int64_t x_bytes = args.W->dtype == DType::i8 ? 1 : 4;  // int8 or f32 activations
        if (args.patches)
          part.patch_row0 = args.patch_row0 + m0;
        else
          part.X = static_cast<const std::byte*>(args.X) + m0 * args.ldx * x_bytes;
        if (args.Y) part.Y = args.Y + m0 * args.ldy;  // (null where it pools)
        if (args.residual) part.residual = args.residual + m0 * args.ldy;
        if (args.pool) pools.give(part, omp_get_thread_num());
        kernel.fn(part, 0, tiles);
      }
      then_phase(args, omp_get_thread_num(), omp_get_num_threads());
    }
    if (args.pool) pools.add_into_call();
    return;
  }
  // Whole pairs of tiles per thread, so the kernels' two-tile blocks stay intact.
  const int64_t pairs = (tiles + 1) / 2;
  threads = int(std::min<int64_t>(threads, pairs));
  if (threads <= 1) {
    kernel.fn(args, 0, tiles);
    if (args.then) args.then(0, 1);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = std::min(tiles, 2 * (pairs * t / nt));
    const int64_t end = std::min(tiles, 2 * (pairs * (t + 1) / nt));
    if (begin < end) kernel.fn(args, begin, end);
    then_phase(args, int(t), int(nt));
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
