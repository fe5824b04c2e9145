#include "engine/ops/conv_gemm.h"

#include <cblas.h>
#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "util/error.h"

namespace sparse24::engine::ops {

namespace {

// One product on the calling thread: OpenBLAS sgemv for a single row or column (the fastest GEMV here),
// oneDNN's sgemm otherwise (OpenBLAS 0.3.21 runs its AVX2 kernels on AVX-512 EPYCs: measured 2x slower than
// oneDNN).
void sgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const auto bi = [](int64_t v) { return blasint(v); };
  if (M == 1) {  // C row = op(B)ᵀ · a
    const int64_t inc_a = trans_a ? lda : 1;
    if (trans_b)  // B stored [N][K]
      cblas_sgemv(CblasRowMajor, CblasNoTrans, bi(N), bi(K), alpha, B, bi(ldb), A, bi(inc_a), beta, C, 1);
    else  // B stored [K][N]
      cblas_sgemv(CblasRowMajor, CblasTrans, bi(K), bi(N), alpha, B, bi(ldb), A, bi(inc_a), beta, C, 1);
    return;
  }
  if (N == 1) {  // C column = op(A) · b
    const int64_t inc_b = trans_b ? 1 : ldb;
    if (trans_a)  // A stored [K][M]
      cblas_sgemv(CblasRowMajor, CblasTrans, bi(K), bi(M), alpha, A, bi(lda), B, bi(inc_b), beta, C, bi(ldc));
    else  // A stored [M][K]
      cblas_sgemv(CblasRowMajor, CblasNoTrans, bi(M), bi(K), alpha, A, bi(lda), B, bi(inc_b), beta, C,
                  bi(ldc));
    return;
  }
  const dnnl_status_t status =
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (status != dnnl_success) fail("oneDNN sgemm {} x {} x {} failed (status {})", M, N, K, int(status));
}

// A 1x1 kernel with stride 1 and no padding: the input itself is the patch (or column) matrix.
bool is_pointwise(const WindowGeometry& w) {
  bool pointwise = true;
  for (int i = 0; i < w.rank(); ++i)
    pointwise &= w.kernel[size_t(i)] == 1 && w.strides[size_t(i)] == 1 && w.pads_begin[size_t(i)] == 0 &&
                 w.pads_end[size_t(i)] == 0;
  return pointwise;
}

// dst[c][r] = src[r][c] (+ bias[c]) for a [rows][cols] block, in square tiles so that both sides stay in
// cache lines; tiles split across threads when the block is large.
void transpose_tiled(const float* src, int64_t rows, int64_t cols, int64_t ld_src, float* dst, int64_t ld_dst,
                     const float* bias) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  parallel_for(row_tiles * col_tiles, rows * cols >= kParallelMinElements, [&](int64_t tile) {
    const int64_t rt = tile / col_tiles, ct = tile % col_tiles;
    const int64_t r0 = rt * kTile, r1 = std::min(rows, r0 + kTile);
    const int64_t c0 = ct * kTile, c1 = std::min(cols, c0 + kTile);
    for (int64_t c = c0; c < c1; ++c) {
      const float b = bias ? bias[c] : 0.0f;
      float* d = dst + c * ld_dst;
      for (int64_t r = r0; r < r1; ++r) d[r] = src[r * ld_src + c] + b;
    }
  });
}

}  // namespace

std::vector<int64_t> ConvShape::output_shape() const {
  std::vector<int64_t> shape = {batch, out_channels};
  shape.insert(shape.end(), window.out.begin(), window.out.end());
  return shape;
}

ConvShape conv_shape(const Node& node, const std::vector<int64_t>& x_shape,
                     const std::vector<int64_t>& w_shape) {
  const int rank = int(x_shape.size());
  if (rank < 3 || rank > 5)
    fail("node '{}' ({}): input X has shape {}; 1-D, 2-D and 3-D convolutions (rank 3 to 5) are supported",
         node.name, node.op, shape_str(x_shape));
  if (int(w_shape.size()) != rank)
    fail("node '{}' ({}): weight W has shape {}, which does not match input X {}", node.name, node.op,
         shape_str(w_shape), shape_str(x_shape));
  ConvShape s;
  s.batch = x_shape[0];
  s.in_channels = x_shape[1];
  s.out_channels = w_shape[0];
  s.groups = node.attrs.get_int("group", 1);
  if (s.groups < 1 || s.in_channels == 0 || s.in_channels % s.groups != 0 || s.out_channels % s.groups != 0 ||
      w_shape[1] * s.groups != s.in_channels)
    fail("node '{}' ({}): group={} does not fit X {} and W {} (need C = W[1] * group, OC divisible by group)",
         node.name, node.op, s.groups, shape_str(x_shape), shape_str(w_shape));
  std::vector<int64_t> kernel(w_shape.begin() + 2, w_shape.end());
  std::vector<int64_t> declared = node.attrs.get_ints("kernel_shape", kernel);
  if (declared != kernel)
    fail("node '{}' ({}): kernel_shape {} does not match weight W {}", node.name, node.op,
         shape_str(declared), shape_str(w_shape));
  s.window = window_geometry(node, {x_shape.begin() + 2, x_shape.end()}, kernel, false);
  return s;
}

Tensor conv_weight_canonical(const Tensor& w) {
  const int64_t oc = w.dim(0), icg = w.dim(1), kvol = dims_product(w.shape(), 2, w.rank());
  Tensor c(DType::f32, {oc, kvol * icg});
  const float* src = w.data<float>();
  float* dst = c.data<float>();
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t i = 0; i < icg; ++i)
      for (int64_t k = 0; k < kvol; ++k) dst[(o * kvol + k) * icg + i] = src[(o * icg + i) * kvol + k];
  return c;
}

void im2col_rows(const ConvShape& shape, const float* x_nhwc, int64_t group, int64_t row0, int64_t rows,
                 float* patches) {
  const Window3 d = to_window3(shape.window);
  const int64_t channels = shape.in_channels, icg = channels / shape.groups, K = shape.K();
  const int64_t out_pixels = shape.out_pixels(), in_pixels = shape.in_pixels();
  parallel_for(rows, rows * K >= kParallelMinElements, [&](int64_t r) {
    const int64_t row = row0 + r, image = row / out_pixels, pos = row % out_pixels;
    const int64_t o2 = pos % d.out[2], o1 = (pos / d.out[2]) % d.out[1], o0 = pos / (d.out[2] * d.out[1]);
    const float* img = x_nhwc + image * in_pixels * channels + group * icg;
    float* dst = patches + r * K;
    // With one group and no dilation along the last dim, a whole kernel row (k[2] positions x all channels)
    // is one contiguous run of the channels-last input whenever it lies inside.
    const int64_t b2 = o2 * d.s[2] - d.pb[2];
    const bool row_copy = icg == channels && d.d[2] == 1 && b2 >= 0 && b2 + d.k[2] <= d.in[2];
    for (int64_t k0 = 0; k0 < d.k[0]; ++k0) {
      const int64_t i0 = o0 * d.s[0] - d.pb[0] + k0 * d.d[0];
      const bool in0 = i0 >= 0 && i0 < d.in[0];
      for (int64_t k1 = 0; k1 < d.k[1]; ++k1) {
        const int64_t i1 = o1 * d.s[1] - d.pb[1] + k1 * d.d[1];
        const bool in1 = in0 && i1 >= 0 && i1 < d.in[1];
        const float* line = img + (i0 * d.in[1] + i1) * d.in[2] * channels;
        if (in1 && row_copy) {
          std::memcpy(dst, line + b2 * channels, size_t(d.k[2] * icg) * sizeof(float));
          dst += d.k[2] * icg;
          continue;
        }
        for (int64_t k2 = 0; k2 < d.k[2]; ++k2, dst += icg) {
          const int64_t i2 = b2 + k2 * d.d[2];
          if (in1 && i2 >= 0 && i2 < d.in[2])
            std::memcpy(dst, line + i2 * channels, size_t(icg) * sizeof(float));
          else
            std::memset(dst, 0, size_t(icg) * sizeof(float));
        }
      }
    }
  });
}

void conv_as_gemm(const ConvShape& shape, const float* x, const ConvGemm& gemm, const float* bias, float* y,
                  bool channels_last) {
  const int64_t channels = shape.in_channels, oc = shape.out_channels, ocg = oc / shape.groups;
  const int64_t icg = channels / shape.groups, K = shape.K();
  const int64_t in_pixels = shape.in_pixels(), out_pixels = shape.out_pixels();
  const int64_t M = shape.batch * out_pixels;
  if (M == 0 || oc == 0) return;

  // Channels-last copy of the input: each patch then reads IC/g contiguous floats per kernel position.
  // Scratch buffers are left uninitialised (every element is written before it is read): zero-filling
  // megabytes per call showed up at ~9% of a small CNN.
  std::unique_ptr<float[]> x_copy;
  const float* x_nhwc = x;
  if (!channels_last) {
    x_copy.reset(new float[size_t(shape.batch * in_pixels * channels)]);
    for (int64_t n = 0; n < shape.batch; ++n)
      transpose_tiled(x + n * channels * in_pixels, channels, in_pixels, in_pixels,
                      x_copy.get() + n * in_pixels * channels, channels, nullptr);
    x_nhwc = x_copy.get();
  }

  const bool pointwise = is_pointwise(shape.window);
  // Tiles of at most ~16 MB of patches keep memory bounded for large images while giving the GEMM long M.
  const int64_t tile =
      pointwise ? M : std::clamp<int64_t>((int64_t(1) << 22) / std::max<int64_t>(K, 1), 256, M);
  std::unique_ptr<float[]> patches(new float[pointwise ? 0 : size_t(tile * K)]);
  // Channels-last output is the GEMM's own [rows][OC]: it is written in place.
  std::unique_ptr<float[]> tile_out(new float[channels_last ? 0 : size_t(tile * oc)]);
  for (int64_t row0 = 0; row0 < M; row0 += tile) {
    const int64_t rows = std::min(tile, M - row0);
    float* out = channels_last ? y + row0 * oc : tile_out.get();
    for (int64_t g = 0; g < shape.groups; ++g) {
      if (pointwise) {
        gemm(g, rows, ocg, K, x_nhwc + row0 * channels + g * icg, channels, out + g * ocg, oc);
      } else {
        im2col_rows(shape, x_nhwc, g, row0, rows, patches.get());
        gemm(g, rows, ocg, K, patches.get(), K, out + g * ocg, oc);
      }
    }
    if (channels_last) {
      if (bias)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < oc; ++o) out[r * oc + o] += bias[o];
      continue;
    }
    // Scatter the [rows][OC] tile to NC(spatial), adding the bias, one image's run of rows at a time.
    for (int64_t r = 0; r < rows;) {
      const int64_t image = (row0 + r) / out_pixels, pos = (row0 + r) % out_pixels;
      const int64_t run = std::min(rows - r, out_pixels - pos);
      transpose_tiled(tile_out.get() + r * oc, run, oc, oc, y + image * oc * out_pixels + pos, out_pixels,
                      bias);
      r += run;
    }
  }
}

namespace {

// Calls f(k0, k1, i0, i1) for each kernel line (k0, k1) of output row (o0, o1) whose input line (i0, i1) is
// inside the input, in kernel order: the depthwise convolutions' sums run over these lines in this order.
template <class F>
void for_kernel_lines(const Window3& d, int64_t o0, int64_t o1, F&& f) {
  for (int64_t k0 = 0; k0 < d.k[0]; ++k0) {
    const int64_t i0 = o0 * d.s[0] - d.pb[0] + k0 * d.d[0];
    if (i0 < 0 || i0 >= d.in[0]) continue;
    for (int64_t k1 = 0; k1 < d.k[1]; ++k1) {
      const int64_t i1 = o1 * d.s[1] - d.pb[1] + k1 * d.d[1];
      if (i1 >= 0 && i1 < d.in[1]) f(k0, k1, i0, i1);
    }
  }
}

}  // namespace

void conv_depthwise_direct(const ConvShape& shape, const float* x, const float* w, const float* bias,
                           float* y) {
  const Window3 d = to_window3(shape.window);
  const int64_t oc_total = shape.out_channels, per_channel = oc_total / shape.groups;
  const int64_t in_pixels = shape.in_pixels(), out_pixels = shape.out_pixels(), kvol = shape.kernel_volume();
  const int64_t planes = shape.batch * oc_total;
  parallel_for(planes, planes * out_pixels * kvol >= kParallelMinElements, [&](int64_t plane) {
    const int64_t n = plane / oc_total, oc = plane % oc_total, ic = oc / per_channel;
    const float* xs = x + (n * shape.in_channels + ic) * in_pixels;
    const float* ws = w + oc * kvol;
    float* ys = y + plane * out_pixels;
    const float b = bias ? bias[oc] : 0.0f;
    for (int64_t o = 0; o < out_pixels; ++o) ys[o] = b;
    // Tap by tap over each output row: the outputs whose input column is inside form one range, and with
    // stride 1 the update is a contiguous axpy.
    for (int64_t o0 = 0; o0 < d.out[0]; ++o0)
      for (int64_t o1 = 0; o1 < d.out[1]; ++o1) {
        float* yrow = ys + (o0 * d.out[1] + o1) * d.out[2];
        for_kernel_lines(d, o0, o1, [&](int64_t k0, int64_t k1, int64_t i0, int64_t i1) {
          const float* xline = xs + (i0 * d.in[1] + i1) * d.in[2];
          for (int64_t k2 = 0; k2 < d.k[2]; ++k2) {
            const float wv = ws[(k0 * d.k[1] + k1) * d.k[2] + k2];
            const int64_t shift = k2 * d.d[2] - d.pb[2];  // input column = o2 · stride + shift
            int64_t lo = 0, hi = d.out[2];
            while (lo < hi && lo * d.s[2] + shift < 0) ++lo;
            while (hi > lo && (hi - 1) * d.s[2] + shift >= d.in[2]) --hi;
            if (d.s[2] == 1)
              for (int64_t o2 = lo; o2 < hi; ++o2) yrow[o2] += wv * xline[o2 + shift];
            else
              for (int64_t o2 = lo; o2 < hi; ++o2) yrow[o2] += wv * xline[o2 * d.s[2] + shift];
          }
        });
      }
  });
}

void conv_depthwise_nhwc(const ConvShape& shape, const float* x, const float* w_by_tap, const float* bias,
                         float* y, DepthwiseEpilogue epilogue) {
  if (shape.groups != shape.in_channels || shape.out_channels != shape.in_channels)
    fail("channels-last depthwise convolution: {} groups of {} input and {} output channels", shape.groups,
         shape.in_channels, shape.out_channels);
  const Window3 d = to_window3(shape.window);
  const int64_t C = shape.in_channels, kvol = shape.kernel_volume();
  // Output columns whose windows stay inside the input along the row: [inner_lo, inner_hi).
  int64_t inner_lo = 0, inner_hi = d.out[2];
  while (inner_lo < inner_hi && inner_lo * d.s[2] - d.pb[2] < 0) ++inner_lo;
  while (inner_hi > inner_lo && (inner_hi - 1) * d.s[2] - d.pb[2] + (d.k[2] - 1) * d.d[2] >= d.in[2])
    --inner_hi;
  const int64_t rows = shape.batch * d.out[0] * d.out[1];  // (image, output row) pairs, as in the pools
  parallel_for(rows, rows * d.out[2] * C * kvol >= kParallelMinElements, [&](int64_t row) {
    const int64_t n = row / (d.out[0] * d.out[1]), o0 = row / d.out[1] % d.out[0], o1 = row % d.out[1];
    // Four lists of up to kvol pointers: an edge column's taps and their weights, the row's kernel lines
    // and theirs.
    SmallBuffer<const float*, 4 * 64> lists(size_t(4 * kvol));
    const float** xt = lists.data();
    const float** wtap = xt + kvol;
    const float** line = wtap + kvol;
    const float** wline = line + kvol;
    // The kernel lines (k0, k1) inside the input for this output row: the input line at column 0 and
    // their weights' first tap.
    int64_t lines = 0;
    for_kernel_lines(d, o0, o1, [&](int64_t k0, int64_t k1, int64_t i0, int64_t i1) {
      line[lines] = x + ((n * d.in[0] + i0) * d.in[1] + i1) * d.in[2] * C;
      wline[lines++] = w_by_tap + (k0 * d.k[1] + k1) * d.k[2] * C;
    });
    float* yrow = y + row * d.out[2] * C;
    // Columns at the row's ends, whose windows leave the input: each its own taps.
    const auto edge = [&](int64_t o2) {
      int64_t taps = 0;
      for (int64_t l = 0; l < lines; ++l)
        for (int64_t k2 = 0; k2 < d.k[2]; ++k2) {
          const int64_t i2 = o2 * d.s[2] - d.pb[2] + k2 * d.d[2];
          if (i2 < 0 || i2 >= d.in[2]) continue;
          xt[taps] = line[l] + i2 * C;
          wtap[taps++] = wline[l] + k2 * C;
        }
      depthwise_taps_f32(xt, wtap, taps, bias, C, epilogue, yrow + o2 * C);
    };
    for (int64_t o2 = 0; o2 < inner_lo; ++o2) edge(o2);
    if (inner_lo < inner_hi) {
      SmallBuffer<const float*, 64> first{size_t(lines)};  // each line at the first inner column's first tap
      const float** at = first.data();
      for (int64_t l = 0; l < lines; ++l) at[l] = line[l] + (inner_lo * d.s[2] - d.pb[2]) * C;
      depthwise_row_f32(at, wline, lines, d.k[2], d.s[2] * C, d.d[2] * C, bias, C, inner_hi - inner_lo,
                        epilogue, yrow + inner_lo * C);
    }
    for (int64_t o2 = std::max(inner_lo, inner_hi); o2 < d.out[2]; ++o2) edge(o2);
  });
}

ConvGemm blas_conv_gemm(const float* canonical_weight) {
  return [canonical_weight](int64_t group, int64_t M, int64_t N, int64_t K, const float* X, int64_t ldx,
                            float* Y, int64_t ldy) {
    blas_sgemm(false, true, M, N, K, 1.0f, X, ldx, canonical_weight + group * N * K, K, 0.0f, Y, ldy);
  };
}

void blas_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // BLAS would reject the leading dimensions; the product is empty, C = beta · C.
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = beta == 0.0f ? 0.0f : beta * C[m * ldc + n];
    return;
  }
  // Below ~4 MFLOP a team costs more than it saves; inside a parallel region (batched MatMul) the caller
  // already splits the work.
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads == 1 || 2.0 * double(M) * double(N) * double(K) < 4e6) {
    sgemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the longer of M and N into one contiguous, 16-aligned piece per thread; each output element is
  // still computed by one call over the whole K.
  const bool split_m = M >= N;
  const int64_t extent = split_m ? M : N;
  const int64_t piece = std::max<int64_t>(16, ((extent + threads - 1) / threads + 15) / 16 * 16);
  const int64_t pieces = (extent + piece - 1) / piece;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t begin = p * piece, len = std::min(piece, extent - begin);
    if (split_m)
      sgemm_serial(trans_a, trans_b, len, N, K, alpha, A + (trans_a ? begin : begin * lda), lda, B, ldb, beta,
                   C + begin * ldc, ldc);
    else
      sgemm_serial(trans_a, trans_b, M, len, K, alpha, A, lda, B + (trans_b ? begin * ldb : begin), ldb, beta,
                   C + begin, ldc);
  }
}

}  // namespace sparse24::engine::ops
