// The sparse24 2:4 GEMM kernels: Yᵀ = W · Xᵀ on mma.sp (sm_80+). The weight W[N][K] is the sparse A operand
// (its rows are the mma's M dimension), the activations X[M][K] row-major are the B operand in "col" layout
// as they are, and each thread's accumulators hold Y at (m = activation row, n = weight row).
// Layouts: sp24_pack.h (values in fragment order, metadata in NVIDIA's layout); docs/gpu.md.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "kernels/cuda/mma_sp.cuh"
#include "kernels/cuda/sp24_launch.h"

namespace sparse24::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kStepBytes = int(kSp24StepBytes);
constexpr int kNTiles = 8;  // n8 tiles (8 activation rows each) per warp: 64 activation rows

// ---- warp level: a 32-row weight tile against one k-step of up to 64 activation rows

// The A operand and metadata of one 32-row tile for one k-step.
struct WeightStep {
  uint4 a[2];     // the two 16-row halves
  uint32_t e[2];  // metadata for each half (16-bit operands use e[0] for both, with selectors 0 and 1)
};

template <class Op>
__device__ __forceinline__ WeightStep load_weight_step(const Sp24LaunchParams& p, int64_t tile, int64_t step,
                                                       int lane) {
  const auto* values = static_cast<const uint8_t*>(p.values);
  WeightStep w;
  // Weights are read once per launch: the non-coherent path, 128 bits per lane, 512 contiguous bytes per
  // warp.
  w.a[0] = __ldg(reinterpret_cast<const uint4*>(values + sp24_fragment_offset(tile, step, p.steps, 0, lane)));
  w.a[1] = __ldg(reinterpret_cast<const uint4*>(values + sp24_fragment_offset(tile, step, p.steps, 1, lane)));
  w.e[0] = __ldg(p.meta + sp24_meta_word_index(tile, step, p.meta_words_per_step, 0, lane, Op::kInt8));
  w.e[1] = Op::kInt8 ? __ldg(p.meta + sp24_meta_word_index(tile, step, p.meta_words_per_step, 1, lane, true))
                     : w.e[0];
  return w;
}

template <class Op>
__device__ __forceinline__ void mma_step(typename Op::Acc (&acc)[2][4], const WeightStep& w,
                                         const uint32_t (&b)[4]) {
  Op::template mma<0>(acc[0], w.a[0], b, w.e[0]);
  if constexpr (Op::kInt8)
    Op::template mma<0>(acc[1], w.a[1], b, w.e[1]);
  else
    Op::template mma<1>(acc[1], w.a[1], b, w.e[0]);
}

// ---- epilogue

template <class Acc>
__device__ __forceinline__ void store_output(const Sp24LaunchParams& p, int64_t m, int64_t n, Acc sum) {
  const int64_t at = m * p.ldy + n;
  if constexpr (std::is_integral_v<Acc>) {  // i8 operands: i32 out, no bias or activation
    static_cast<int32_t*>(p.y)[at] = sum;
  } else {
    float v = sum;
    if (p.bias) v += p.bias[n];
    if (p.activation == Sp24Activation::relu)  // a NaN stays NaN, as on the CPU
      v = v < 0.0f ? 0.0f : v;
    else if (p.activation == Sp24Activation::gelu)
      v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    else if (p.activation == Sp24Activation::relu6)
      v = v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v;
    switch (p.output) {
      case Sp24Output::f16:
        static_cast<__half*>(p.y)[at] = __float2half_rn(v);
        break;
      case Sp24Output::bf16:
        static_cast<__nv_bfloat16*>(p.y)[at] = __float2bfloat16_rn(v);
        break;
      default:
        static_cast<float*>(p.y)[at] = v;
        break;
    }
  }
}

// ---- small-M kernel: memory-bound, the compressed weight streamed once per 64 activation rows
// Block = one 32-row weight tile x 64 activation rows. The 8 warps split the k-steps (each takes runs of
// kUnroll consecutive steps, loading them all before computing, so enough bytes are in flight), then add
// their partial sums in shared memory; the epilogue writes Y rows contiguously along n.

// 8 steps (about 9 KB per warp) in flight before the first is used: enough outstanding loads to stream the
// weight at full bandwidth with one 8-warp block per SM; registers (about 220) still fit without spills.
constexpr int kUnroll = 8;

template <class Op>
__global__ void __launch_bounds__(kThreads) sp24_gemm_small_m_kernel(const Sp24LaunchParams p) {
  using Acc = typename Op::Acc;
  // +1 column: the epilogue reads along n (stride 65 words), which then hits 32 different banks.
  __shared__ Acc partial[32][kNTiles * 8 + 1];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, tid = lane % 4;
  const int64_t tile = blockIdx.x;
  const int64_t m0 = int64_t(blockIdx.y) * kNTiles * 8;
  const int64_t rows_left_tiles = (p.m - m0 + 7) / 8;
  const int live_ntiles = rows_left_tiles < kNTiles ? int(rows_left_tiles) : kNTiles;
  const int elem_bytes = Op::kInt8 ? 1 : 2;
  const int64_t x_row_bytes = p.ldx * elem_bytes, k_bytes = p.k * elem_bytes;
  const auto* x = static_cast<const uint8_t*>(p.x);

  for (int i = threadIdx.x; i < 32 * (kNTiles * 8 + 1); i += kThreads) (&partial[0][0])[i] = Acc(0);

  Acc acc[kNTiles][2][4] = {};
  for (int64_t s0 = int64_t(warp) * kUnroll; s0 < p.steps; s0 += int64_t(kWarps) * kUnroll) {
    WeightStep w[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (s0 + u < p.steps) w[u] = load_weight_step<Op>(p, tile, s0 + u, lane);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (s0 + u >= p.steps) break;
      const int64_t kb = (s0 + u) * kStepBytes + 4 * tid;
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        if (j >= live_ntiles) break;
        const int64_t m = m0 + 8 * j + group;
        uint32_t b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int64_t off = kb + 16 * i;
          // Rows past M and the K tail inside the last k-step read as zero (the weight there is zero too,
          // but X might hold NaN/Inf or not be mapped at all).
          b[i] = (m < p.m && off < k_bytes)
                     ? __ldg(reinterpret_cast<const uint32_t*>(x + m * x_row_bytes + off))
                     : 0u;
        }
        mma_step<Op>(acc[j], w[u], b);
      }
    }
  }

  __syncthreads();  // partial[] zeroed
#pragma unroll
  for (int j = 0; j < kNTiles; ++j) {
    if (j >= live_ntiles) break;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        atomicAdd(&partial[h * 16 + group + 8 * (r / 2)][8 * j + 2 * tid + r % 2], acc[j][h][r]);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 32 * kNTiles * 8; i += kThreads) {
    const int n_local = i % 32, m_local = i / 32;
    const int64_t m = m0 + m_local, n = tile * 32 + n_local;
    if (m < p.m && n < p.n) store_output(p, m, n, partial[n_local][m_local]);
  }
}

// ---- large-M kernel: 128 weight rows x 128 activation rows per block
// Warps 4 (along n, 32 weight rows each) x 2 (along m, 64 activation rows each). The activation tile goes
// through shared memory, two k-steps per stage, double-buffered with cp.async (zero-filled past M and K); the
// A operand comes straight from global memory in fragment order (the two warps sharing it hit L1).

constexpr int kLargeTileN = 128, kLargeTileM = 128, kStageSteps = 2;
// 16 bytes of padding per row: the 8 rows one ldmatrix phase reads (16 bytes each) then cover all 32 banks.
constexpr int kSmemRowBytes = kStageSteps * kStepBytes + 16;

__device__ __forceinline__ void cp_async_16(void* smem, const void* global, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;  // 0: the 16 bytes are zero-filled, nothing is read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global), "r"(src_bytes));
}
// "memory": shared-memory reads must not move above the wait.
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Loads one n8 tile's B registers for a k-step from shared memory in one instruction: the four 8x8 b16
// matrices of ldmatrix.x4 are bytes 0-15, 16-31, 32-47, 48-63 of the 8 activation rows, and lane l names row
// l % 8 of matrix l / 8. Each lane then holds bytes 16·i + 4·tid of row groupID in register i — the B
// fragment of mma.sp m16n8k32 (16-bit) and m16n8k64 (i8) alike. volatile: it must stay after the barrier
// that publishes the cp.async data.
__device__ __forceinline__ void load_b_fragment(uint32_t (&b)[4], const uint8_t* tile_rows, int lane) {
  const uint8_t* row = tile_rows + (lane % 8) * kSmemRowBytes + 16 * (lane / 8);
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(addr)
               : "memory");
}

// Which output tile a block computes. Blocks run roughly in index order, so consecutive blocks walk down a
// panel of kPanelMTiles activation tiles before moving to the next weight tile: the blocks resident at one
// time then share a few megabytes of weights and activations in L2, instead of every row of blocks re-reading
// the whole weight from memory (a 14336x4096 weight does not fit in L2).
constexpr int64_t kPanelMTiles = 16;
struct BlockTile {
  int64_t n_tile, m_tile;
};
__device__ __forceinline__ BlockTile swizzled_block_tile(int64_t block, int64_t n_tiles, int64_t m_tiles) {
  const int64_t panel = block / (kPanelMTiles * n_tiles), in_panel = block % (kPanelMTiles * n_tiles);
  const int64_t panel_m0 = panel * kPanelMTiles;
  const int64_t panel_height = m_tiles - panel_m0 < kPanelMTiles ? m_tiles - panel_m0 : kPanelMTiles;
  return {in_panel / panel_height, panel_m0 + in_panel % panel_height};
}

template <class Op>
__global__ void __launch_bounds__(kThreads) sp24_gemm_large_m_kernel(const Sp24LaunchParams p) {
  using Acc = typename Op::Acc;
  __shared__ alignas(16) uint8_t xs[2][kLargeTileM * kSmemRowBytes];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, tid = lane % 4;
  const int warp_n = warp % 4, warp_m = warp / 4;
  const BlockTile bt =
      swizzled_block_tile(blockIdx.x, (p.row_tiles + kLargeTileN / 32 - 1) / (kLargeTileN / 32),
                          (p.m + kLargeTileM - 1) / kLargeTileM);
  const int64_t tile = bt.n_tile * (kLargeTileN / 32) + warp_n;
  const bool tile_live = tile < p.row_tiles;  // warp-uniform: N past the padded weight
  const int64_t m0 = bt.m_tile * kLargeTileM;
  const int elem_bytes = Op::kInt8 ? 1 : 2;
  const int64_t x_row_bytes = p.ldx * elem_bytes, k_bytes = p.k * elem_bytes;
  const auto* x = static_cast<const uint8_t*>(p.x);
  const int64_t stages = (p.steps + kStageSteps - 1) / kStageSteps;

  auto load_stage = [&](int64_t stage, int buf) {
    constexpr int kChunksPerRow = kStageSteps * kStepBytes / 16;
    for (int c = threadIdx.x; c < kLargeTileM * kChunksPerRow; c += kThreads) {
      const int r = c / kChunksPerRow, chunk = c % kChunksPerRow;
      const int64_t m = m0 + r, kb = stage * kStageSteps * kStepBytes + chunk * 16;
      const bool valid = m < p.m && kb < k_bytes;  // K bytes are a multiple of 16 (can_implement)
      cp_async_16(&xs[buf][r * kSmemRowBytes + chunk * 16], valid ? x + m * x_row_bytes + kb : x, valid);
    }
    cp_async_commit();
  };

  Acc acc[kNTiles][2][4] = {};
  load_stage(0, 0);
  for (int64_t st = 0; st < stages; ++st) {
    WeightStep w[kStageSteps];
#pragma unroll
    for (int u = 0; u < kStageSteps; ++u)
      if (tile_live && st * kStageSteps + u < p.steps)
        w[u] = load_weight_step<Op>(p, tile, st * kStageSteps + u, lane);
    if (st + 1 < stages) {
      load_stage(st + 1, int((st + 1) % 2));
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint8_t* buf = xs[st % 2];
#pragma unroll
    for (int u = 0; u < kStageSteps; ++u) {
      if (!tile_live || st * kStageSteps + u >= p.steps) break;
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        uint32_t b[4];
        load_b_fragment(b, buf + (warp_m * kNTiles * 8 + 8 * j) * kSmemRowBytes + u * kStepBytes, lane);
        mma_step<Op>(acc[j], w[u], b);
      }
    }
    __syncthreads();  // the next iteration's cp.async overwrites the buffer just read
  }

  if (!tile_live) return;
#pragma unroll
  for (int j = 0; j < kNTiles; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t n = tile * 32 + h * 16 + group + 8 * (r / 2);
        const int64_t m = m0 + warp_m * kNTiles * 8 + 8 * j + 2 * tid + r % 2;
        if (m < p.m && n < p.n) store_output(p, m, n, acc[j][h][r]);
      }
}

template <class Op>
void launch(Sp24Kernel kernel, const Sp24LaunchParams& p, cudaStream_t stream) {
  if (kernel == Sp24Kernel::automatic)
    kernel = p.m <= kSp24SmallMMax ? Sp24Kernel::small_m : Sp24Kernel::large_m;
  if (kernel == Sp24Kernel::small_m) {
    dim3 grid(unsigned(p.row_tiles), unsigned((p.m + kNTiles * 8 - 1) / (kNTiles * 8)));
    sp24_gemm_small_m_kernel<Op><<<grid, kThreads, 0, stream>>>(p);
  } else {
    const int64_t n_tiles = (p.row_tiles + kLargeTileN / 32 - 1) / (kLargeTileN / 32);
    const int64_t m_tiles = (p.m + kLargeTileM - 1) / kLargeTileM;
    sp24_gemm_large_m_kernel<Op><<<unsigned(n_tiles * m_tiles), kThreads, 0, stream>>>(p);
  }
}

}  // namespace

cudaError_t launch_sp24_gemm(Sp24Operand operand, Sp24Kernel kernel, const Sp24LaunchParams& params,
                             cudaStream_t stream) {
  if (params.m <= 0) return cudaSuccess;
  switch (operand) {
    case Sp24Operand::f16:
      launch<OpF16>(kernel, params, stream);
      break;
    case Sp24Operand::bf16:
      launch<OpBF16>(kernel, params, stream);
      break;
    case Sp24Operand::i8:
      launch<OpI8>(kernel, params, stream);
      break;
  }
  return cudaGetLastError();
}

}  // namespace sparse24::cuda
