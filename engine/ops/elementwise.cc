// Element-wise arithmetic and comparison with numpy (multidirectional) broadcasting.
#include <cmath>
#include <limits>
#include <type_traits>

#include "engine/ops/op_impl.h"
#include "engine/ops/op_util.h"
#include "engine/ops/simd_kernels.h"
#include "util/error.h"

namespace sparse24::engine::ops {

namespace {

// y = f(a, b) over a broadcast plan. The innermost merged dimension has stride 0 or 1 in each operand, so the
// four stride patterns each get their own loop the compiler can vectorise.
template <typename A, typename B, typename R, typename F>
void binary_loop(const BroadcastPlan<2>& plan, const A* a, const B* b, R* y, F f) {
  const int64_t inner = plan.inner(), outer = plan.outer();
  const bool a_step = !plan.strides[0].empty() && plan.strides[0][0] != 0;
  const bool b_step = !plan.strides[1].empty() && plan.strides[1][0] != 0;
  parallel_for(outer, outer * inner >= kParallelMinElements && outer > 1, [&](int64_t r) {
    auto off = plan.row_offsets(r);
    const A* pa = a + off[0];
    const B* pb = b + off[1];
    R* py = y + r * inner;
    if (a_step && b_step) {
      for (int64_t i = 0; i < inner; ++i) py[i] = f(pa[i], pb[i]);
    } else if (a_step) {
      const B bv = *pb;
      for (int64_t i = 0; i < inner; ++i) py[i] = f(pa[i], bv);
    } else if (b_step) {
      const A av = *pa;
      for (int64_t i = 0; i < inner; ++i) py[i] = f(av, pb[i]);
    } else {
      const R v = f(*pa, *pb);
      for (int64_t i = 0; i < inner; ++i) py[i] = v;
    }
  });
}

// The single-row case (same shapes, or a scalar operand) is split across threads within the row.
template <typename A, typename B, typename R, typename F>
void binary_apply(const std::vector<int64_t>& out_shape, const Tensor& ta, const Tensor& tb, Tensor& ty,
                  F f) {
  const A* a = reinterpret_cast<const A*>(ta.bytes());
  const B* b = reinterpret_cast<const B*>(tb.bytes());
  R* y = reinterpret_cast<R*>(ty.bytes());
  const int64_t n = ty.numel();
  if (n == 0) return;
  if (ta.shape() == out_shape && tb.shape() == out_shape) {
    parallel_ranges(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y[i] = f(a[i], b[i]);
    });
    return;
  }
  if (ta.shape() == out_shape && tb.numel() == 1) {
    const B bv = b[0];
    parallel_ranges(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y[i] = f(a[i], bv);
    });
    return;
  }
  if (tb.shape() == out_shape && ta.numel() == 1) {
    const A av = a[0];
    parallel_ranges(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y[i] = f(av, b[i]);
    });
    return;
  }
  binary_loop(plan_broadcast<2>(out_shape, {&ta.shape(), &tb.shape()}), a, b, y, f);
}

enum class Arith { add, sub, mul, div };

// Integer add/sub/mul wrap on overflow as numpy does; done in the unsigned type, where wrapping is defined
// (signed overflow is undefined behaviour). Floats pass through unchanged.
template <typename T, bool = std::is_integral_v<T>>
struct WrapType {
  using type = T;
};
template <typename T>
struct WrapType<T, true> {
  using type = std::make_unsigned_t<T>;
};
template <typename T>
using Wide = typename WrapType<T>::type;

template <typename T>
void arith_typed(const Node& node, Arith op, const std::vector<int64_t>& shape, const Tensor& a,
                 const Tensor& b, Tensor& y) {
  switch (op) {
    case Arith::add:
      binary_apply<T, T, T>(shape, a, b, y, [](T x, T z) { return T(Wide<T>(x) + Wide<T>(z)); });
      break;
    case Arith::sub:
      binary_apply<T, T, T>(shape, a, b, y, [](T x, T z) { return T(Wide<T>(x) - Wide<T>(z)); });
      break;
    case Arith::mul:
      binary_apply<T, T, T>(shape, a, b, y, [](T x, T z) { return T(Wide<T>(x) * Wide<T>(z)); });
      break;
    case Arith::div:
      if constexpr (std::is_integral_v<T>) {
        // Integer division by zero (and MIN / -1) is undefined in C++: refuse it up front.
        const T* d = b.data<T>();
        for (int64_t i = 0; i < b.numel(); ++i)
          if (d[i] == 0) fail("node '{}' (Div): integer division by zero", node.name);
        const T* n = a.data<T>();
        bool has_min = false, has_minus_one = false;
        for (int64_t i = 0; i < a.numel(); ++i) has_min |= n[i] == std::numeric_limits<T>::min();
        for (int64_t i = 0; i < b.numel(); ++i) has_minus_one |= d[i] == T(-1);
        if (has_min && has_minus_one)
          fail("node '{}' (Div): integer overflow (minimum value / -1)", node.name);
      }
      binary_apply<T, T, T>(shape, a, b, y, [](T x, T z) { return T(x / z); });
      break;
  }
}

void run_arith(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out, Arith op) {
  const Tensor& a = required_input(node, in, 0);
  const Tensor& b = required_input(node, in, 1);
  require_dtype(node, a, {DType::f32, DType::i32, DType::i64, DType::i8}, "input A");
  if (b.dtype() != a.dtype())
    fail("node '{}' ({}): inputs have different dtypes ({} and {})", node.name, node.op,
         dtype_name(a.dtype()), dtype_name(b.dtype()));
  std::vector<int64_t> shape = broadcast_shapes(node, {&a.shape(), &b.shape()});
  out[0] = Tensor::uninitialized(a.dtype(), shape);
  switch (a.dtype()) {
    case DType::f32:
      arith_typed<float>(node, op, shape, a, b, out[0]);
      break;
    case DType::i32:
      arith_typed<int32_t>(node, op, shape, a, b, out[0]);
      break;
    case DType::i8:
      arith_typed<int8_t>(node, op, shape, a, b, out[0]);
      break;  // wraps, as numpy does
    default:
      arith_typed<int64_t>(node, op, shape, a, b, out[0]);
      break;
  }
}

// Pow keeps the base's dtype; the exponent may be any of f32, i32, i64 (opset 12+).
template <typename T, typename E>
void pow_typed(const std::vector<int64_t>& shape, const Tensor& a, const Tensor& b, Tensor& y) {
  if constexpr (std::is_same_v<T, float>) {
    if (b.numel() == 1 && a.shape() == shape) {
      // x^2 and x^0.5 are exact as a product and a square root, and much cheaper than pow.
      double e = double(reinterpret_cast<const E*>(b.bytes())[0]);
      if (e == 2.0) return binary_apply<T, E, T>(shape, a, b, y, [](T x, E) { return x * x; });
      if (e == 0.5) return binary_apply<T, E, T>(shape, a, b, y, [](T x, E) { return std::sqrt(x); });
    }
    binary_apply<T, E, T>(shape, a, b, y, [](T x, E e) { return std::pow(x, float(e)); });
  } else {
    // Integer powers go through double and saturate where the result does not fit (no undefined conversion).
    binary_apply<T, E, T>(shape, a, b, y, [](T x, E e) {
      const double p = std::pow(double(x), double(e));
      if (!(p > double(std::numeric_limits<T>::min()))) return p != p ? T(0) : std::numeric_limits<T>::min();
      if (p >= double(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
      return T(p);
    });
  }
}

template <typename T>
void pow_base(const std::vector<int64_t>& shape, const Tensor& a, const Tensor& b, Tensor& y) {
  switch (b.dtype()) {
    case DType::f32:
      pow_typed<T, float>(shape, a, b, y);
      break;
    case DType::i32:
      pow_typed<T, int32_t>(shape, a, b, y);
      break;
    default:
      pow_typed<T, int64_t>(shape, a, b, y);
      break;
  }
}

template <typename T>
void equal_typed(const std::vector<int64_t>& shape, const Tensor& a, const Tensor& b, Tensor& y) {
  binary_apply<T, T, uint8_t>(shape, a, b, y, [](T x, T z) { return uint8_t(x == z); });
}

template <typename T>
void where_typed(const std::vector<int64_t>& shape, const Tensor& c, const Tensor& x, const Tensor& z,
                 Tensor& y) {
  BroadcastPlan<3> plan = plan_broadcast<3>(shape, {&c.shape(), &x.shape(), &z.shape()});
  const uint8_t* pc = c.data<uint8_t>();
  const T* px = reinterpret_cast<const T*>(x.bytes());
  const T* pz = reinterpret_cast<const T*>(z.bytes());
  T* py = reinterpret_cast<T*>(y.bytes());
  const int64_t inner = plan.inner(), outer = plan.outer();
  auto inner_stride = [&](int k) { return plan.strides[size_t(k)].empty() ? 0 : plan.strides[size_t(k)][0]; };
  const int64_t sc = inner_stride(0), sx = inner_stride(1), sz = inner_stride(2);
  parallel_for(outer, outer * inner >= kParallelMinElements && outer > 1, [&](int64_t r) {
    auto off = plan.row_offsets(r);
    const uint8_t* rc = pc + off[0];
    const T* rx = px + off[1];
    const T* rz = pz + off[2];
    T* ry = py + r * inner;
    for (int64_t i = 0; i < inner; ++i) ry[i] = rc[i * sc] ? rx[i * sx] : rz[i * sz];
  });
}

}  // namespace

void run_add(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  run_arith(node, in, out, Arith::add);
}
void run_sub(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  run_arith(node, in, out, Arith::sub);
}
void run_mul(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  run_arith(node, in, out, Arith::mul);
}
void run_div(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  run_arith(node, in, out, Arith::div);
}

void run_pow(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& a = required_input(node, in, 0);
  const Tensor& b = required_input(node, in, 1);
  require_dtype(node, a, {DType::f32, DType::i32, DType::i64}, "input X");
  require_dtype(node, b, {DType::f32, DType::i32, DType::i64}, "input Y");
  std::vector<int64_t> shape = broadcast_shapes(node, {&a.shape(), &b.shape()});
  out[0] = Tensor(a.dtype(), shape);
  switch (a.dtype()) {
    case DType::f32:
      pow_base<float>(shape, a, b, out[0]);
      break;
    case DType::i32:
      pow_base<int32_t>(shape, a, b, out[0]);
      break;
    default:
      pow_base<int64_t>(shape, a, b, out[0]);
      break;
  }
}

void run_sqrt(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  map_f32(node, required_input(node, in, 0), out[0], [](float x) { return std::sqrt(x); });
}

void run_erf(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  map_f32_kernel(node, required_input(node, in, 0), out[0], erf_f32);
}

void run_equal(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& a = required_input(node, in, 0);
  const Tensor& b = required_input(node, in, 1);
  require_dtype(node, a, {DType::f32, DType::i32, DType::i64, DType::i8, DType::boolean}, "input A");
  if (b.dtype() != a.dtype())
    fail("node '{}' (Equal): inputs have different dtypes ({} and {})", node.name, dtype_name(a.dtype()),
         dtype_name(b.dtype()));
  std::vector<int64_t> shape = broadcast_shapes(node, {&a.shape(), &b.shape()});
  out[0] = Tensor(DType::boolean, shape);
  switch (a.dtype()) {
    case DType::f32:
      equal_typed<float>(shape, a, b, out[0]);
      break;
    case DType::i32:
      equal_typed<int32_t>(shape, a, b, out[0]);
      break;
    case DType::i64:
      equal_typed<int64_t>(shape, a, b, out[0]);
      break;
    case DType::i8:
      equal_typed<int8_t>(shape, a, b, out[0]);
      break;
    default:
      equal_typed<uint8_t>(shape, a, b, out[0]);
      break;
  }
}

void run_where(const Node& node, std::span<const Tensor* const> in, std::span<Tensor> out) {
  const Tensor& c = required_input(node, in, 0);
  const Tensor& x = required_input(node, in, 1);
  const Tensor& z = required_input(node, in, 2);
  require_dtype(node, c, {DType::boolean}, "condition");
  if (x.dtype() != z.dtype())
    fail("node '{}' (Where): X and Y have different dtypes ({} and {})", node.name, dtype_name(x.dtype()),
         dtype_name(z.dtype()));
  std::vector<int64_t> shape = broadcast_shapes(node, {&c.shape(), &x.shape(), &z.shape()});
  out[0] = Tensor(x.dtype(), shape);
  if (out[0].numel() == 0) return;
  switch (dtype_size(x.dtype())) {
    case 1:
      where_typed<uint8_t>(shape, c, x, z, out[0]);
      break;
    case 2:
      where_typed<uint16_t>(shape, c, x, z, out[0]);
      break;
    case 4:
      where_typed<uint32_t>(shape, c, x, z, out[0]);
      break;
    default:
      where_typed<uint64_t>(shape, c, x, z, out[0]);
      break;
  }
}

}  // namespace sparse24::engine::ops
