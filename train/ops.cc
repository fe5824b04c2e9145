#include "train/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <type_traits>

#include "engine/ops/conv_gemm.h"
#include "engine/ops/op_util.h"
#include "util/error.h"

namespace sparse24::train {

using engine::Node;
using engine::ops::kParallelMinElements;

void cannot_train(const Node& node, const std::string& why) {
  fail("op {} (node '{}') cannot be trained{}{}", node.op, node.name, why.empty() ? "" : ": ", why);
}

namespace {

template <typename T>
void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const auto trans = [](bool t) { return t ? CblasTrans : CblasNoTrans; };
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, trans(ta), trans(tb), blasint(M), blasint(N), blasint(K), alpha, A,
                blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
  else
    cblas_dgemm(CblasRowMajor, trans(ta), trans(tb), blasint(M), blasint(N), blasint(K), alpha, A,
                blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}

}  // namespace

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = beta == T(0) ? T(0) : beta * C[m * ldc + n];
    return;
  }
  // Threaded OpenBLAS blocks K differently for different thread counts, which changes the rounding. So the
  // threads here split the longer of M and N into fixed chunks, and each chunk is one single-threaded BLAS
  // call (OpenBLAS runs on one thread inside a parallel region): every output element is summed the same way
  // whatever the number of threads.
  constexpr int64_t kChunk = 64;
  const bool split_n = N >= M;
  const int64_t length = split_n ? N : M, chunks = (length + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t first = c * kChunk, count = std::min(kChunk, length - first);
    if (split_n)  // columns [first, first + count) of op(B) and C
      blas_gemm<T>(ta, tb, M, count, K, alpha, A, lda, tb ? B + first * ldb : B + first, ldb, beta, C + first,
                   ldc);
    else  // rows [first, first + count) of op(A) and C
      blas_gemm<T>(ta, tb, count, N, K, alpha, ta ? A + first : A + first * lda, lda, B, ldb, beta,
                   C + first * ldc, ldc);
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                          int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

namespace {

template <typename T>
const Buf<T>& input(const Node& node, const OpInputs<T>& in, size_t i) {
  if (i >= in.values.size() || !in.values[i]) cannot_train(node, fmt::format("input {} is missing", i));
  return *in.values[i];
}

template <typename T>
const Buf<T>* optional(const OpInputs<T>& in, size_t i) {
  return i < in.values.size() ? in.values[i] : nullptr;
}

// ---- numpy broadcasting of up to two inputs onto an output ---------------------------------------------

// Element strides of `shape` aligned to the right of `out` (0 along broadcast dims).
std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    const size_t d = shape.size() - 1 - i, o = out.size() - 1 - i;
    if (shape[d] != 1) strides[o] = stride;
    stride *= shape[d];
  }
  return strides;
}

// Calls f(out index, offset in a, offset in b) for every output element, in order.
template <typename F>
void for_each_broadcast(const std::vector<int64_t>& out, const std::vector<int64_t>& sa,
                        const std::vector<int64_t>& sb, F f) {
  const int64_t n = shape_numel(out);
  const size_t rank = out.size();
  std::vector<int64_t> idx(rank, 0);
  int64_t ia = 0, ib = 0;
  for (int64_t i = 0; i < n; ++i) {
    f(i, ia, ib);
    for (size_t d = rank; d-- > 0;) {
      ++idx[d];
      ia += sa[d];
      ib += sb[d];
      if (idx[d] < out[d]) break;
      ia -= sa[d] * out[d];
      ib -= sb[d] * out[d];
      idx[d] = 0;
    }
  }
}

enum class Binary { add, sub, mul };

template <Binary kOp, typename T>
void binary_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                    const ForwardMode&) {
  const Buf<T>& a = input(node, in, 0);
  const Buf<T>& b = input(node, in, 1);
  auto apply = [](T x, T y) { return kOp == Binary::add ? x + y : kOp == Binary::sub ? x - y : x * y; };
  if (a.shape == b.shape) {
    out[0] = Buf<T>(a.shape);
    T* y = out[0].ptr();
    const int64_t n = a.numel();
#pragma omp parallel for if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) y[i] = apply(a.data[size_t(i)], b.data[size_t(i)]);
    return;
  }
  const std::vector<int64_t> shape = engine::ops::broadcast_shapes(node, {&a.shape, &b.shape});
  out[0] = Buf<T>(shape);
  T* y = out[0].ptr();
  for_each_broadcast(
      shape, broadcast_strides(a.shape, shape), broadcast_strides(b.shape, shape),
      [&](int64_t i, int64_t ia, int64_t ib) { y[i] = apply(a.data[size_t(ia)], b.data[size_t(ib)]); });
}

template <Binary kOp, typename T>
void binary_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const> out,
                     std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din, const NodeCache<T>&) {
  if (!dout[0]) return;
  const Buf<T>& a = input(node, in, 0);
  const Buf<T>& b = input(node, in, 1);
  const T* dy = dout[0]->ptr();
  T* da = din[0] ? din[0]->ptr() : nullptr;
  T* db = din.size() > 1 && din[1] ? din[1]->ptr() : nullptr;
  auto grads = [&](int64_t i, int64_t ia, int64_t ib) {
    if (da) da[ia] += kOp == Binary::mul ? dy[i] * b.data[size_t(ib)] : dy[i];
    if (db) db[ib] += kOp == Binary::mul ? dy[i] * a.data[size_t(ia)] : kOp == Binary::sub ? -dy[i] : dy[i];
  };
  if (a.shape == b.shape) {
    const int64_t n = a.numel();
#pragma omp parallel for if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) grads(i, i, i);
    return;
  }
  // Broadcast inputs collect from many outputs: one thread, in order, so the sums are reproducible.
  const std::vector<int64_t>& shape = out[0]->shape;
  for_each_broadcast(shape, broadcast_strides(a.shape, shape), broadcast_strides(b.shape, shape), grads);
}

// ---- activations ---------------------------------------------------------------------------------------

template <typename T>
void relu_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                  const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  out[0] = Buf<T>(x.shape);
  const int64_t n = x.numel();
  T* y = out[0].ptr();
#pragma omp parallel for simd if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) y[i] = x.data[size_t(i)] > T(0) ? x.data[size_t(i)] : T(0);
}

template <typename T>
void relu_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const>,
                   std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din, const NodeCache<T>&) {
  if (!dout[0] || !din[0]) return;
  const Buf<T>& x = input(node, in, 0);
  const T* dy = dout[0]->ptr();
  T* dx = din[0]->ptr();
  const int64_t n = x.numel();
#pragma omp parallel for simd if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) dx[i] += x.data[size_t(i)] > T(0) ? dy[i] : T(0);
}

// True for approximate='tanh', false for the exact (erf) form.
bool gelu_tanh(const Node& node) {
  const std::string approximate = node.attrs.get_string("approximate", "none");
  if (approximate != "none" && approximate != "tanh")
    cannot_train(node, fmt::format("approximate='{}' (expected 'none' or 'tanh')", approximate));
  return approximate == "tanh";
}

template <typename T>
void gelu_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                  const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  const bool tanh_form = gelu_tanh(node);
  out[0] = Buf<T>(x.shape);
  const int64_t n = x.numel();
  T* y = out[0].ptr();
  const T inv_sqrt2 = T(1.0 / std::numbers::sqrt2), c = T(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);
#pragma omp parallel for if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x.data[size_t(i)];
    y[i] = tanh_form ? T(0.5) * v * (T(1) + std::tanh(c * (v + T(0.044715) * v * v * v)))
                     : T(0.5) * v * (T(1) + std::erf(v * inv_sqrt2));
  }
}

template <typename T>
void gelu_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const>,
                   std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din, const NodeCache<T>&) {
  if (!dout[0] || !din[0]) return;
  const Buf<T>& x = input(node, in, 0);
  const bool tanh_form = gelu_tanh(node);
  const T* dy = dout[0]->ptr();
  T* dx = din[0]->ptr();
  const int64_t n = x.numel();
  const T inv_sqrt2 = T(1.0 / std::numbers::sqrt2), c = T(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);
  const T inv_sqrt_2pi = T(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
#pragma omp parallel for if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x.data[size_t(i)];
    T d;
    if (tanh_form) {
      const T t = std::tanh(c * (v + T(0.044715) * v * v * v));
      d = T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * c * (T(1) + T(3 * 0.044715) * v * v);
    } else {
      d = T(0.5) * (T(1) + std::erf(v * inv_sqrt2)) + v * inv_sqrt_2pi * std::exp(T(-0.5) * v * v);
    }
    dx[i] += dy[i] * d;
  }
}

// ---- shape ops -----------------------------------------------------------------------------------------

template <typename T>
void reshape_to(const Buf<T>& x, std::vector<int64_t> shape, Buf<T>& y) {
  y.shape = std::move(shape);
  y.data = x.data;
}

template <typename T>
void copy_backward(const Node&, const OpInputs<T>&, std::span<const Buf<T>* const>,
                   std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din, const NodeCache<T>&) {
  if (!dout[0] || !din[0]) return;
  const int64_t n = din[0]->numel();
  const T* dy = dout[0]->ptr();
  T* dx = din[0]->ptr();
#pragma omp parallel for simd if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i];
}

template <typename T>
void identity_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                      const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  reshape_to(x, x.shape, out[0]);
}

template <typename T>
void flatten_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                     const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  const int64_t axis_attr = node.attrs.get_int("axis", 1);
  const int axis = axis_attr == x.rank() ? x.rank() : engine::ops::normalize_axis(node, axis_attr, x.rank());
  reshape_to(
      x, {engine::ops::dims_product(x.shape, 0, axis), engine::ops::dims_product(x.shape, axis, x.rank())},
      out[0]);
}

template <typename T>
void reshape_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                     const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  if (in.constants.size() < 2 || !in.constants[1]) cannot_train(node, "its shape input is not a constant");
  const std::vector<int64_t> shape =
      engine::ops::reshape_target(node, x.shape, engine::ops::read_int_list(node, *in.constants[1], "shape"));
  reshape_to(x, shape, out[0]);
}

// ---- Gemm and MatMul -----------------------------------------------------------------------------------

template <typename T>
struct GemmDims {
  bool ta, tb;
  T alpha, beta;
  int64_t M, N, K;
};

template <typename T>
GemmDims<T> gemm_dims(const Node& node, const Buf<T>& a, const Buf<T>& b) {
  if (a.rank() != 2 || b.rank() != 2)
    fail("node '{}' (Gemm): A {} and B {} must be 2-D", node.name, shape_str(a.shape), shape_str(b.shape));
  GemmDims<T> d;
  d.ta = node.attrs.get_int("transA", 0) != 0;
  d.tb = node.attrs.get_int("transB", 0) != 0;
  d.alpha = T(node.attrs.get_float("alpha", 1.0f));
  d.beta = T(node.attrs.get_float("beta", 1.0f));
  d.M = d.ta ? a.dim(1) : a.dim(0);
  d.K = d.ta ? a.dim(0) : a.dim(1);
  d.N = d.tb ? b.dim(0) : b.dim(1);
  if ((d.tb ? b.dim(1) : b.dim(0)) != d.K)
    fail("node '{}' (Gemm): A {} and B {} disagree on K", node.name, shape_str(a.shape), shape_str(b.shape));
  return d;
}

template <typename T>
void gemm_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                  const ForwardMode&) {
  const Buf<T>& a = input(node, in, 0);
  const Buf<T>& b = input(node, in, 1);
  const Buf<T>* c = optional(in, 2);
  const GemmDims<T> d = gemm_dims(node, a, b);
  const std::vector<int64_t> mn = {d.M, d.N};
  out[0] = Buf<T>(mn);
  T* y = out[0].ptr();
  T beta = 0;
  if (c && d.beta != T(0)) {
    if (engine::ops::broadcast_shapes(node, {&c->shape, &mn}) != mn)
      fail("node '{}' (Gemm): C {} does not broadcast to [{}, {}]", node.name, shape_str(c->shape), d.M, d.N);
    const std::vector<int64_t> zero(mn.size(), 0);
    for_each_broadcast(mn, broadcast_strides(c->shape, mn), zero,
                       [&](int64_t i, int64_t ic, int64_t) { y[i] = c->data[size_t(ic)]; });
    beta = d.beta;
  }
  gemm<T>(d.ta, d.tb, d.M, d.N, d.K, d.alpha, a.ptr(), a.dim(1), b.ptr(), b.dim(1), beta, y, d.N);
}

template <typename T>
void gemm_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const>,
                   std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din, const NodeCache<T>&) {
  if (!dout[0]) return;
  const Buf<T>& a = input(node, in, 0);
  const Buf<T>& b = input(node, in, 1);
  const GemmDims<T> d = gemm_dims(node, a, b);
  const T* dy = dout[0]->ptr();
  if (din[0]) {
    if (!d.ta)  // dA[M][K] = alpha · dY · op(B)ᵀ
      gemm<T>(false, !d.tb, d.M, d.K, d.N, d.alpha, dy, d.N, b.ptr(), b.dim(1), T(1), din[0]->ptr(), d.K);
    else  // dA[K][M] = alpha · op(B) · dYᵀ
      gemm<T>(d.tb, true, d.K, d.M, d.N, d.alpha, b.ptr(), b.dim(1), dy, d.N, T(1), din[0]->ptr(), d.M);
  }
  if (din.size() > 1 && din[1]) {
    if (!d.tb)  // dB[K][N] = alpha · op(A)ᵀ · dY
      gemm<T>(!d.ta, false, d.K, d.N, d.M, d.alpha, a.ptr(), a.dim(1), dy, d.N, T(1), din[1]->ptr(), d.N);
    else  // dB[N][K] = alpha · dYᵀ · op(A)
      gemm<T>(true, d.ta, d.N, d.K, d.M, d.alpha, dy, d.N, a.ptr(), a.dim(1), T(1), din[1]->ptr(), d.K);
  }
  if (din.size() > 2 && din[2] && d.beta != T(0)) {
    Buf<T>& dc = *din[2];
    if (dc.numel() == d.N && (dc.rank() == 1 || dc.dim(0) == 1)) {  // a bias row: sum each column
#pragma omp parallel for if (d.M * d.N >= kParallelMinElements)
      for (int64_t n = 0; n < d.N; ++n) {
        T sum = 0;
        for (int64_t m = 0; m < d.M; ++m) sum += dy[m * d.N + n];
        dc.data[size_t(n)] += d.beta * sum;
      }
    } else {
      const std::vector<int64_t> mn = {d.M, d.N}, zero(2, 0);
      for_each_broadcast(mn, broadcast_strides(dc.shape, mn), zero,
                         [&](int64_t i, int64_t ic, int64_t) { dc.data[size_t(ic)] += d.beta * dy[i]; });
    }
  }
}

// MatMul with a 2-D B (a weight): A [..., M, K] is one [rows][K] matrix.
template <typename T>
void matmul_check(const Node& node, const Buf<T>& a, const Buf<T>& b) {
  if (b.rank() != 2 || a.rank() < 2)
    cannot_train(node, fmt::format("A {} and B {}: training needs A of rank >= 2 and a 2-D B",
                                   shape_str(a.shape), shape_str(b.shape)));
  if (a.dim(-1) != b.dim(0))
    fail("node '{}' (MatMul): A {} and B {} disagree on K", node.name, shape_str(a.shape),
         shape_str(b.shape));
}

template <typename T>
void matmul_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                    const ForwardMode&) {
  const Buf<T>& a = input(node, in, 0);
  const Buf<T>& b = input(node, in, 1);
  matmul_check(node, a, b);
  const int64_t K = b.dim(0), N = b.dim(1), rows = a.numel() / std::max<int64_t>(K, 1);
  std::vector<int64_t> shape = a.shape;
  shape.back() = N;
  out[0] = Buf<T>(shape);
  gemm<T>(false, false, rows, N, K, T(1), a.ptr(), K, b.ptr(), N, T(0), out[0].ptr(), N);
}

template <typename T>
void matmul_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const>,
                     std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din, const NodeCache<T>&) {
  if (!dout[0]) return;
  const Buf<T>& a = input(node, in, 0);
  const Buf<T>& b = input(node, in, 1);
  const int64_t K = b.dim(0), N = b.dim(1), rows = a.numel() / std::max<int64_t>(K, 1);
  const T* dy = dout[0]->ptr();
  if (din[0]) gemm<T>(false, true, rows, K, N, T(1), dy, N, b.ptr(), N, T(1), din[0]->ptr(), K);
  if (din.size() > 1 && din[1])
    gemm<T>(true, false, K, N, rows, T(1), a.ptr(), K, dy, N, T(1), din[1]->ptr(), N);
}

// ---- Conv (2-D, any group count) as im2col + one GEMM per group over the whole batch -------------------

// Patch matrix layout: cols[k][image · out_pixels + pixel], k = (channel · kh + i) · kw + j, the order of the
// ONNX weight W[OC][C/g][kh][kw], so that W is used as stored: group g multiplies its OC/g rows of W,
// [OC/g][K/g], with its K/g consecutive rows of cols. One GEMM over the whole batch makes the sum over
// images (the weight gradient) the K of a GEMM, which gemm() never splits across threads.
struct Conv2d {
  int64_t batch, channels, oc, groups, h, w, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow;
  int64_t K() const { return channels * kh * kw; }
  int64_t group_k() const { return K() / groups; }
  int64_t group_oc() const { return oc / groups; }
  int64_t pixels() const { return oh * ow; }
  int64_t cols() const { return batch * pixels(); }
};

template <typename T>
Conv2d conv_geometry(const Node& node, const Buf<T>& x, const Buf<T>& w) {
  const engine::ops::ConvShape s = engine::ops::conv_shape(node, x.shape, w.shape);
  if (s.window.rank() != 2)
    cannot_train(node, fmt::format("{}-D convolution (2-D is trained)", s.window.rank()));
  const auto& g = s.window;
  Conv2d c{};
  c.batch = s.batch;
  c.channels = s.in_channels;
  c.oc = s.out_channels;
  c.groups = s.groups;
  c.h = g.in[0];
  c.w = g.in[1];
  c.kh = g.kernel[0];
  c.kw = g.kernel[1];
  c.sh = g.strides[0];
  c.sw = g.strides[1];
  c.dh = g.dilations[0];
  c.dw = g.dilations[1];
  c.ph = g.pads_begin[0];
  c.pw = g.pads_begin[1];
  c.oh = g.out[0];
  c.ow = g.out[1];
  return c;
}

template <typename T>
void im2col(const Conv2d& c, const T* x, T* cols) {
  const int64_t K = c.K(), pixels = c.pixels(), ncols = c.cols();
#pragma omp parallel for if (K * ncols >= kParallelMinElements)
  for (int64_t k = 0; k < K; ++k) {
    const int64_t ch = k / (c.kh * c.kw), i = (k / c.kw) % c.kh, j = k % c.kw;
    T* row = cols + k * ncols;
    for (int64_t b = 0; b < c.batch; ++b) {
      const T* plane = x + (b * c.channels + ch) * c.h * c.w;
      T* dst = row + b * pixels;
      for (int64_t oy = 0; oy < c.oh; ++oy) {
        const int64_t iy = oy * c.sh - c.ph + i * c.dh;
        for (int64_t ox = 0; ox < c.ow; ++ox) {
          const int64_t ix = ox * c.sw - c.pw + j * c.dw;
          dst[oy * c.ow + ox] = iy >= 0 && iy < c.h && ix >= 0 && ix < c.w ? plane[iy * c.w + ix] : T(0);
        }
      }
    }
  }
}

template <typename T>
void col2im_add(const Conv2d& c, const T* cols, T* dx) {
  const int64_t pixels = c.pixels(), ncols = c.cols();
  // One (image, channel) plane per iteration: each input element is summed by one thread, in a fixed order.
#pragma omp parallel for if (c.K() * ncols >= kParallelMinElements)
  for (int64_t bc = 0; bc < c.batch * c.channels; ++bc) {
    const int64_t b = bc / c.channels, ch = bc % c.channels;
    T* plane = dx + bc * c.h * c.w;
    for (int64_t i = 0; i < c.kh; ++i)
      for (int64_t j = 0; j < c.kw; ++j) {
        const T* src = cols + ((ch * c.kh + i) * c.kw + j) * ncols + b * pixels;
        for (int64_t oy = 0; oy < c.oh; ++oy) {
          const int64_t iy = oy * c.sh - c.ph + i * c.dh;
          if (iy < 0 || iy >= c.h) continue;
          for (int64_t ox = 0; ox < c.ow; ++ox) {
            const int64_t ix = ox * c.sw - c.pw + j * c.dw;
            if (ix >= 0 && ix < c.w) plane[iy * c.w + ix] += src[oy * c.ow + ox];
          }
        }
      }
  }
}

template <typename T>
void conv_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>& cache,
                  const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  const Buf<T>& w = input(node, in, 1);
  const Buf<T>* bias = optional(in, 2);
  const Conv2d c = conv_geometry(node, x, w);
  if (bias && bias->numel() != c.oc)
    fail("node '{}' (Conv): bias has shape {}, expected [{}]", node.name, shape_str(bias->shape), c.oc);
  const int64_t K = c.K(), ncols = c.cols(), pixels = c.pixels();
  cache.saved.assign(size_t(K * ncols), T(0));
  im2col(c, x.ptr(), cache.saved.data());
  std::vector<T> y_cols(size_t(c.oc * ncols));  // [OC][image · pixel]
  const int64_t gk = c.group_k(), goc = c.group_oc();
  for (int64_t g = 0; g < c.groups; ++g)
    gemm<T>(false, false, goc, ncols, gk, T(1), w.ptr() + g * goc * gk, gk,
            cache.saved.data() + g * gk * ncols, ncols, T(0), y_cols.data() + g * goc * ncols, ncols);
  out[0] = Buf<T>({c.batch, c.oc, c.oh, c.ow});
  T* y = out[0].ptr();
#pragma omp parallel for if (c.oc * ncols >= kParallelMinElements)
  for (int64_t bo = 0; bo < c.batch * c.oc; ++bo) {
    const int64_t b = bo / c.oc, o = bo % c.oc;
    const T add = bias ? bias->data[size_t(o)] : T(0);
    const T* src = y_cols.data() + o * ncols + b * pixels;
    for (int64_t p = 0; p < pixels; ++p) y[bo * pixels + p] = src[p] + add;
  }
}

template <typename T>
void conv_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const>,
                   std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din,
                   const NodeCache<T>& cache) {
  if (!dout[0]) return;
  const Buf<T>& x = input(node, in, 0);
  const Buf<T>& w = input(node, in, 1);
  const Conv2d c = conv_geometry(node, x, w);
  const int64_t K = c.K(), ncols = c.cols(), pixels = c.pixels();
  const T* dy = dout[0]->ptr();
  std::vector<T> dy_cols(size_t(c.oc * ncols));
#pragma omp parallel for if (c.oc * ncols >= kParallelMinElements)
  for (int64_t o = 0; o < c.oc; ++o)
    for (int64_t b = 0; b < c.batch; ++b)
      std::copy_n(dy + (b * c.oc + o) * pixels, pixels, dy_cols.data() + o * ncols + b * pixels);
  const int64_t gk = c.group_k(), goc = c.group_oc();
  if (din.size() > 1 && din[1])  // per group: dW[OC/g][K/g] += dY · colsᵀ
    for (int64_t g = 0; g < c.groups; ++g)
      gemm<T>(false, true, goc, gk, ncols, T(1), dy_cols.data() + g * goc * ncols, ncols,
              cache.saved.data() + g * gk * ncols, ncols, T(1), din[1]->ptr() + g * goc * gk, gk);
  if (din.size() > 2 && din[2]) {
    T* db = din[2]->ptr();
#pragma omp parallel for if (c.oc * ncols >= kParallelMinElements)
    for (int64_t o = 0; o < c.oc; ++o) {
      T sum = 0;
      for (int64_t i = 0; i < ncols; ++i) sum += dy_cols[size_t(o * ncols + i)];
      db[o] += sum;
    }
  }
  if (din[0]) {  // per group: dcols[K/g][·] = Wᵀ · dY, then scattered back onto the input planes
    std::vector<T> dcols(size_t(K * ncols));
    for (int64_t g = 0; g < c.groups; ++g)
      gemm<T>(true, false, gk, ncols, goc, T(1), w.ptr() + g * goc * gk, gk, dy_cols.data() + g * goc * ncols,
              ncols, T(0), dcols.data() + g * gk * ncols, ncols);
    col2im_add(c, dcols.data(), din[0]->ptr());
  }
}

// ---- pooling (2-D) -------------------------------------------------------------------------------------

struct Pool2d {
  int64_t planes, h, w, kh, kw, sh, sw, dh, dw, ph, pw, pe_h, pe_w, oh, ow;
};

template <typename T>
Pool2d pool_geometry(const Node& node, const Buf<T>& x) {
  if (x.rank() != 4)
    cannot_train(node,
                 fmt::format("input {} (2-D pooling over [N][C][H][W] is trained)", shape_str(x.shape)));
  const std::vector<int64_t> kernel = node.attrs.get_ints("kernel_shape");
  if (kernel.size() != 2) fail("node '{}' ({}): kernel_shape must have 2 values", node.name, node.op);
  const auto g = engine::ops::window_geometry(node, {x.dim(2), x.dim(3)}, kernel, true);
  return {x.dim(0) * x.dim(1), g.in[0],       g.in[1],        g.kernel[0],    g.kernel[1],
          g.strides[0],        g.strides[1],  g.dilations[0], g.dilations[1], g.pads_begin[0],
          g.pads_begin[1],     g.pads_end[0], g.pads_end[1],  g.out[0],       g.out[1]};
}

template <typename T>
void max_pool_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>& cache,
                      const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  if (out.size() > 1) cannot_train(node, "the Indices output");
  const Pool2d p = pool_geometry(node, x);
  out[0] = Buf<T>({x.dim(0), x.dim(1), p.oh, p.ow});
  cache.index.assign(size_t(out[0].numel()), 0);
  T* y = out[0].ptr();
  const int64_t in_plane = p.h * p.w, out_plane = p.oh * p.ow;
#pragma omp parallel for if (out[0].numel() * p.kh * p.kw >= kParallelMinElements)
  for (int64_t plane = 0; plane < p.planes; ++plane) {
    const T* xs = x.ptr() + plane * in_plane;
    for (int64_t oy = 0; oy < p.oh; ++oy)
      for (int64_t ox = 0; ox < p.ow; ++ox) {
        int64_t best = -1;
        for (int64_t i = 0; i < p.kh; ++i) {
          const int64_t iy = oy * p.sh - p.ph + i * p.dh;
          if (iy < 0 || iy >= p.h) continue;
          for (int64_t j = 0; j < p.kw; ++j) {
            const int64_t ix = ox * p.sw - p.pw + j * p.dw;
            if (ix < 0 || ix >= p.w) continue;
            if (best < 0 || xs[iy * p.w + ix] > xs[best]) best = iy * p.w + ix;
          }
        }
        const int64_t o = plane * out_plane + oy * p.ow + ox;
        cache.index[size_t(o)] = best;
        y[o] = best < 0 ? T(0) : xs[best];
      }
  }
}

template <typename T>
void max_pool_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const> out,
                       std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din,
                       const NodeCache<T>& cache) {
  if (!dout[0] || !din[0]) return;
  const Pool2d p = pool_geometry(node, input(node, in, 0));
  const int64_t in_plane = p.h * p.w, out_plane = p.oh * p.ow;
  const T* dy = dout[0]->ptr();
  T* dx = din[0]->ptr();
#pragma omp parallel for if (out[0]->numel() >= kParallelMinElements)
  for (int64_t plane = 0; plane < p.planes; ++plane)
    for (int64_t o = plane * out_plane; o < (plane + 1) * out_plane; ++o)
      if (cache.index[size_t(o)] >= 0) dx[plane * in_plane + cache.index[size_t(o)]] += dy[o];
}

// Window taps along one dim inside [lo, limit).
int64_t taps_inside(int64_t begin, int64_t kernel, int64_t dilation, int64_t lo, int64_t limit) {
  int64_t n = 0;
  for (int64_t k = 0; k < kernel; ++k) n += begin + k * dilation >= lo && begin + k * dilation < limit;
  return n;
}

// Calls f(output index, input index within the plane, 1 / divisor) for each tap of each window of a plane.
template <typename F>
void for_each_average_tap(const Node& node, const Pool2d& p, F f) {
  const bool include_pad = node.attrs.get_int("count_include_pad", 0) != 0;
  for (int64_t oy = 0; oy < p.oh; ++oy)
    for (int64_t ox = 0; ox < p.ow; ++ox) {
      const int64_t by = oy * p.sh - p.ph, bx = ox * p.sw - p.pw;
      const int64_t count = include_pad
                                ? taps_inside(by, p.kh, p.dh, -p.ph, p.h + p.pe_h) *
                                      taps_inside(bx, p.kw, p.dw, -p.pw, p.w + p.pe_w)
                                : taps_inside(by, p.kh, p.dh, 0, p.h) * taps_inside(bx, p.kw, p.dw, 0, p.w);
      const double scale = count ? 1.0 / double(count) : 0.0;
      for (int64_t i = 0; i < p.kh; ++i) {
        const int64_t iy = by + i * p.dh;
        if (iy < 0 || iy >= p.h) continue;
        for (int64_t j = 0; j < p.kw; ++j) {
          const int64_t ix = bx + j * p.dw;
          if (ix >= 0 && ix < p.w) f(oy * p.ow + ox, iy * p.w + ix, scale);
        }
      }
    }
}

template <typename T>
void average_pool_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>&,
                          const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  const Pool2d p = pool_geometry(node, x);
  out[0] = Buf<T>({x.dim(0), x.dim(1), p.oh, p.ow});
  const int64_t in_plane = p.h * p.w, out_plane = p.oh * p.ow;
  T* y = out[0].ptr();
#pragma omp parallel for if (out[0].numel() * p.kh * p.kw >= kParallelMinElements)
  for (int64_t plane = 0; plane < p.planes; ++plane) {
    const T* xs = x.ptr() + plane * in_plane;
    T* ys = y + plane * out_plane;
    for_each_average_tap(node, p, [&](int64_t o, int64_t i, double s) { ys[o] += xs[i] * T(s); });
  }
}

template <typename T>
void average_pool_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const> out,
                           std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din,
                           const NodeCache<T>&) {
  if (!dout[0] || !din[0]) return;
  const Pool2d p = pool_geometry(node, input(node, in, 0));
  const int64_t in_plane = p.h * p.w, out_plane = p.oh * p.ow;
  const T* dy = dout[0]->ptr();
  T* dx = din[0]->ptr();
#pragma omp parallel for if (out[0]->numel() * p.kh * p.kw >= kParallelMinElements)
  for (int64_t plane = 0; plane < p.planes; ++plane) {
    const T* dys = dy + plane * out_plane;
    T* dxs = dx + plane * in_plane;
    for_each_average_tap(node, p, [&](int64_t o, int64_t i, double s) { dxs[i] += dys[o] * T(s); });
  }
}

template <typename T>
void global_average_pool_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out,
                                 NodeCache<T>&, const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  if (x.rank() < 3)
    fail("node '{}' (GlobalAveragePool): input has rank {}, expected >= 3", node.name, x.rank());
  std::vector<int64_t> shape = {x.dim(0), x.dim(1)};
  shape.resize(size_t(x.rank()), 1);
  out[0] = Buf<T>(shape);
  const int64_t planes = x.dim(0) * x.dim(1), n = x.numel() / std::max<int64_t>(planes, 1);
#pragma omp parallel for if (x.numel() >= kParallelMinElements)
  for (int64_t plane = 0; plane < planes; ++plane) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += double(x.data[size_t(plane * n + i)]);
    out[0].data[size_t(plane)] = T(sum / double(n));
  }
}

template <typename T>
void global_average_pool_backward(const Node&, const OpInputs<T>&, std::span<const Buf<T>* const> out,
                                  std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din,
                                  const NodeCache<T>&) {
  if (!dout[0] || !din[0]) return;
  const int64_t planes = out[0]->numel(), n = din[0]->numel() / std::max<int64_t>(planes, 1);
  T* dx = din[0]->ptr();
#pragma omp parallel for if (din[0]->numel() >= kParallelMinElements)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T g = dout[0]->data[size_t(plane)] / T(n);
    for (int64_t i = 0; i < n; ++i) dx[plane * n + i] += g;
  }
}

// ---- BatchNormalization --------------------------------------------------------------------------------

template <typename T>
void batchnorm_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>& cache,
                       const ForwardMode& mode) {
  const Buf<T>& x = input(node, in, 0);
  if (x.rank() < 2)
    fail("node '{}' (BatchNormalization): input has rank {}, expected >= 2", node.name, x.rank());
  if (out.size() > 1) cannot_train(node, "the running-statistics outputs (the trainer keeps them itself)");
  const int64_t channels = x.dim(1), batch = x.dim(0),
                spatial = x.numel() / std::max<int64_t>(batch * channels, 1);
  const char* names[] = {"X", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 1; i < 5; ++i)
    if (input(node, in, i).numel() != channels)
      fail("node '{}' (BatchNormalization): {} has shape {}, expected [{}]", node.name, names[i],
           shape_str(input(node, in, i).shape), channels);
  const T* scale = input(node, in, 1).ptr();
  const T* shift = input(node, in, 2).ptr();
  const double eps = node.attrs.get_float("epsilon", 1e-5f);
  cache.training = mode.training;
  cache.stats.assign(size_t(2 * channels), T(0));
  out[0] = Buf<T>(x.shape);
  const T* src = x.ptr();
  T* dst = out[0].ptr();
  const double count = double(batch * spatial);
#pragma omp parallel for if (x.numel() >= kParallelMinElements)
  for (int64_t c = 0; c < channels; ++c) {
    double mean, var;
    if (mode.training) {  // this batch's statistics, biased variance (as ONNX's training mode)
      double sum = 0, sq = 0;
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < spatial; ++i) sum += double(src[(b * channels + c) * spatial + i]);
      mean = sum / count;
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < spatial; ++i) {
          const double d = double(src[(b * channels + c) * spatial + i]) - mean;
          sq += d * d;
        }
      var = sq / count;
    } else {
      mean = double(input(node, in, 3).data[size_t(c)]);
      var = double(input(node, in, 4).data[size_t(c)]);
    }
    cache.stats[size_t(c)] = T(mean);
    cache.stats[size_t(channels + c)] = T(var);
    const T inv_std = T(1.0 / std::sqrt(var + eps)), m = T(mean);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t base = (b * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i)
        dst[base + i] = (src[base + i] - m) * inv_std * scale[c] + shift[c];
    }
  }
}

template <typename T>
void batchnorm_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const>,
                        std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din,
                        const NodeCache<T>& cache) {
  if (!dout[0]) return;
  const Buf<T>& x = input(node, in, 0);
  const int64_t channels = x.dim(1), batch = x.dim(0),
                spatial = x.numel() / std::max<int64_t>(batch * channels, 1);
  const T* scale = input(node, in, 1).ptr();
  const double eps = node.attrs.get_float("epsilon", 1e-5f);
  const T* src = x.ptr();
  const T* dy = dout[0]->ptr();
  T* dx = din[0] ? din[0]->ptr() : nullptr;
  T* dscale = din.size() > 1 && din[1] ? din[1]->ptr() : nullptr;
  T* dshift = din.size() > 2 && din[2] ? din[2]->ptr() : nullptr;
  const T count = T(batch * spatial);
#pragma omp parallel for if (x.numel() >= kParallelMinElements)
  for (int64_t c = 0; c < channels; ++c) {
    const T mean = cache.stats[size_t(c)];
    const T inv_std = T(1.0 / std::sqrt(double(cache.stats[size_t(channels + c)]) + eps));
    T sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t base = (b * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i) {
        sum_dy += dy[base + i];
        sum_dy_xhat += dy[base + i] * (src[base + i] - mean) * inv_std;
      }
    }
    if (dscale) dscale[c] += sum_dy_xhat;
    if (dshift) dshift[c] += sum_dy;
    if (!dx) continue;
    const T g = scale[c] * inv_std;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t base = (b * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i) {
        if (cache.training) {  // the batch statistics depend on every x of the channel
          const T xhat = (src[base + i] - mean) * inv_std;
          dx[base + i] += g * (dy[base + i] - sum_dy / count - xhat * sum_dy_xhat / count);
        } else {
          dx[base + i] += g * dy[base + i];
        }
      }
    }
  }
}

// ---- LayerNormalization --------------------------------------------------------------------------------

struct LayerNormDims {
  int64_t rows, n;
};

template <typename T>
LayerNormDims layernorm_dims(const Node& node, const OpInputs<T>& in) {
  const Buf<T>& x = input(node, in, 0);
  const int axis = engine::ops::normalize_axis(node, node.attrs.get_int("axis", -1), x.rank());
  const LayerNormDims d{engine::ops::dims_product(x.shape, 0, axis),
                        engine::ops::dims_product(x.shape, axis, x.rank())};
  if (input(node, in, 1).numel() != d.n || (optional(in, 2) && optional(in, 2)->numel() != d.n))
    cannot_train(node, fmt::format("Scale and B must hold one value per normalised element ({})", d.n));
  return d;
}

template <typename T>
void layernorm_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>& cache,
                       const ForwardMode&) {
  const Buf<T>& x = input(node, in, 0);
  if (out.size() > 1) cannot_train(node, "the Mean and InvStdDev outputs");
  const LayerNormDims d = layernorm_dims(node, in);
  const T* scale = input(node, in, 1).ptr();
  const T* shift = optional(in, 2) ? optional(in, 2)->ptr() : nullptr;
  const double eps = node.attrs.get_float("epsilon", 1e-5f);
  out[0] = Buf<T>(x.shape);
  cache.stats.assign(size_t(2 * d.rows), T(0));
  const T* src = x.ptr();
  T* dst = out[0].ptr();
#pragma omp parallel for if (x.numel() >= kParallelMinElements && d.rows > 1)
  for (int64_t r = 0; r < d.rows; ++r) {
    const T* s = src + r * d.n;
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < d.n; ++i) sum += double(s[i]);
    const double mean = sum / double(d.n);
    for (int64_t i = 0; i < d.n; ++i) sq += (double(s[i]) - mean) * (double(s[i]) - mean);
    const T inv_std = T(1.0 / std::sqrt(sq / double(d.n) + eps)), m = T(mean);
    cache.stats[size_t(2 * r)] = m;
    cache.stats[size_t(2 * r + 1)] = inv_std;
    for (int64_t i = 0; i < d.n; ++i)
      dst[r * d.n + i] = (s[i] - m) * inv_std * scale[i] + (shift ? shift[i] : T(0));
  }
}

template <typename T>
void layernorm_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const>,
                        std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din,
                        const NodeCache<T>& cache) {
  if (!dout[0]) return;
  const LayerNormDims d = layernorm_dims(node, in);
  const T* src = input(node, in, 0).ptr();
  const T* scale = input(node, in, 1).ptr();
  const T* dy = dout[0]->ptr();
  auto xhat = [&](int64_t r, int64_t i) {
    return (src[r * d.n + i] - cache.stats[size_t(2 * r)]) * cache.stats[size_t(2 * r + 1)];
  };
  if (din[0]) {
    T* dx = din[0]->ptr();
#pragma omp parallel for if (d.rows * d.n >= kParallelMinElements && d.rows > 1)
    for (int64_t r = 0; r < d.rows; ++r) {
      T mean_g = 0, mean_gx = 0;
      for (int64_t i = 0; i < d.n; ++i) {
        const T g = dy[r * d.n + i] * scale[i];
        mean_g += g;
        mean_gx += g * xhat(r, i);
      }
      mean_g /= T(d.n);
      mean_gx /= T(d.n);
      const T inv_std = cache.stats[size_t(2 * r + 1)];
      for (int64_t i = 0; i < d.n; ++i)
        dx[r * d.n + i] += inv_std * (dy[r * d.n + i] * scale[i] - mean_g - xhat(r, i) * mean_gx);
    }
  }
  T* dscale = din.size() > 1 && din[1] ? din[1]->ptr() : nullptr;
  T* dshift = din.size() > 2 && din[2] ? din[2]->ptr() : nullptr;
  if (!dscale && !dshift) return;
#pragma omp parallel for if (d.rows * d.n >= kParallelMinElements)
  for (int64_t i = 0; i < d.n; ++i) {
    T gs = 0, gb = 0;
    for (int64_t r = 0; r < d.rows; ++r) {
      gs += dy[r * d.n + i] * xhat(r, i);
      gb += dy[r * d.n + i];
    }
    if (dscale) dscale[i] += gs;
    if (dshift) dshift[i] += gb;
  }
}

// ---- Dropout -------------------------------------------------------------------------------------------

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser: a counter-based generator, the same on every thread
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename T>
float dropout_ratio(const Node& node, const OpInputs<T>& in) {
  float ratio = node.attrs.get_float("ratio", 0.5f);
  if (node.opset >= 12 && in.values.size() > 1 && in.values[1]) {
    if (in.values[1]->numel() != 1) fail("node '{}' (Dropout): ratio must be a scalar", node.name);
    ratio = float(in.values[1]->data[0]);
  }
  if (!(ratio >= 0.0f && ratio < 1.0f))
    fail("node '{}' (Dropout): ratio {} is not in [0, 1)", node.name, ratio);
  return ratio;
}

template <typename T>
void dropout_forward(const Node& node, const OpInputs<T>& in, std::span<Buf<T>> out, NodeCache<T>& cache,
                     const ForwardMode& mode) {
  const Buf<T>& x = input(node, in, 0);
  if (out.size() > 1) cannot_train(node, "the mask output");
  const float ratio = dropout_ratio(node, in);
  cache.training = mode.training && ratio > 0.0f;
  if (!cache.training) {
    reshape_to(x, x.shape, out[0]);
    return;
  }
  out[0] = Buf<T>(x.shape);
  cache.keep.assign(size_t(x.numel()), 0);
  const uint64_t stream = mix64(mode.seed ^ mix64(mode.node_index + 0x9e3779b97f4a7c15ULL));
  const T scale = T(1.0 / (1.0 - double(ratio)));
  const int64_t n = x.numel();
#pragma omp parallel for if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const double u = double(mix64(stream + uint64_t(i)) >> 11) * 0x1.0p-53;
    cache.keep[size_t(i)] = u >= double(ratio);
    out[0].data[size_t(i)] = cache.keep[size_t(i)] ? x.data[size_t(i)] * scale : T(0);
  }
}

template <typename T>
void dropout_backward(const Node& node, const OpInputs<T>& in, std::span<const Buf<T>* const>,
                      std::span<const Buf<T>* const> dout, std::span<Buf<T>* const> din,
                      const NodeCache<T>& cache) {
  if (!dout[0] || !din[0]) return;
  const T* dy = dout[0]->ptr();
  T* dx = din[0]->ptr();
  const int64_t n = din[0]->numel();
  if (!cache.training) {
    for (int64_t i = 0; i < n; ++i) dx[i] += dy[i];
    return;
  }
  const T scale = T(1.0 / (1.0 - double(dropout_ratio(node, in))));
#pragma omp parallel for if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) dx[i] += cache.keep[size_t(i)] ? dy[i] * scale : T(0);
}

template <typename T>
const std::vector<TrainOp<T>>& op_table() {
  static const std::vector<TrainOp<T>> table = {
      {"Add", binary_forward<Binary::add, T>, binary_backward<Binary::add, T>, 0b11, 0},
      {"Sub", binary_forward<Binary::sub, T>, binary_backward<Binary::sub, T>, 0b11, 0},
      {"Mul", binary_forward<Binary::mul, T>, binary_backward<Binary::mul, T>, 0b11, 0},
      {"Relu", relu_forward<T>, relu_backward<T>, 0b1, 0},
      {"Gelu", gelu_forward<T>, gelu_backward<T>, 0b1, 0},
      {"Identity", identity_forward<T>, copy_backward<T>, 0b1, 0},
      {"Flatten", flatten_forward<T>, copy_backward<T>, 0b1, 0},
      {"Reshape", reshape_forward<T>, copy_backward<T>, 0b1, 0},
      {"Gemm", gemm_forward<T>, gemm_backward<T>, 0b111, 0b110},
      {"MatMul", matmul_forward<T>, matmul_backward<T>, 0b11, 0b10},
      {"Conv", conv_forward<T>, conv_backward<T>, 0b111, 0b110},
      {"MaxPool", max_pool_forward<T>, max_pool_backward<T>, 0b1, 0},
      {"AveragePool", average_pool_forward<T>, average_pool_backward<T>, 0b1, 0},
      {"GlobalAveragePool", global_average_pool_forward<T>, global_average_pool_backward<T>, 0b1, 0},
      {"BatchNormalization", batchnorm_forward<T>, batchnorm_backward<T>, 0b111, 0b110},
      {"LayerNormalization", layernorm_forward<T>, layernorm_backward<T>, 0b111, 0b110},
      {"Dropout", dropout_forward<T>, dropout_backward<T>, 0b1, 0},
  };
  return table;
}

}  // namespace

template <typename T>
const TrainOp<T>* find_train_op(std::string_view op_type) {
  for (const TrainOp<T>& op : op_table<T>())
    if (op.op_type == op_type) return &op;
  return nullptr;
}

std::vector<std::string_view> trainable_ops() {
  std::vector<std::string_view> names;
  for (const TrainOp<float>& op : op_table<float>()) names.push_back(op.op_type);
  std::sort(names.begin(), names.end());
  return names;
}

template <typename T>
double softmax_cross_entropy(const Buf<T>& logits, std::span<const int64_t> labels, Buf<T>* dlogits,
                             int64_t* correct) {
  if (logits.rank() != 2 || logits.dim(0) != int64_t(labels.size()))
    fail("the model's output {} is not logits [batch, classes] for a batch of {}", shape_str(logits.shape),
         labels.size());
  const int64_t rows = logits.dim(0), classes = logits.dim(1);
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  std::vector<uint8_t> hit(static_cast<size_t>(rows), 0);
  if (dlogits) *dlogits = Buf<T>(logits.shape);
#pragma omp parallel for if (rows * classes >= kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const T* z = logits.ptr() + r * classes;
    int64_t best = 0;
    for (int64_t c = 1; c < classes; ++c)
      if (z[c] > z[best]) best = c;
    double sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(double(z[c]) - double(z[best]));
    const int64_t label = labels[size_t(r)];
    row_loss[size_t(r)] = std::log(sum) - (double(z[label]) - double(z[best]));
    hit[size_t(r)] = best == label;
    if (dlogits)
      for (int64_t c = 0; c < classes; ++c) {
        const double p = std::exp(double(z[c]) - double(z[best])) / sum;
        dlogits->data[size_t(r * classes + c)] = T((p - (c == label ? 1.0 : 0.0)) / double(rows));
      }
  }
  double loss = 0;
  int64_t hits = 0;
  for (int64_t r = 0; r < rows; ++r) {
    loss += row_loss[size_t(r)];
    hits += hit[size_t(r)];
  }
  if (correct) *correct = hits;
  return rows ? loss / double(rows) : 0.0;
}

template const TrainOp<float>* find_train_op<float>(std::string_view);
template const TrainOp<double>* find_train_op<double>(std::string_view);
template double softmax_cross_entropy<float>(const Buf<float>&, std::span<const int64_t>, Buf<float>*,
                                             int64_t*);
template double softmax_cross_entropy<double>(const Buf<double>&, std::span<const int64_t>, Buf<double>*,
                                              int64_t*);

}  // namespace sparse24::train
