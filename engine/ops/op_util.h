#pragma once
// Helpers the op files share: dtype checks, axis normalisation, integer lists read from tensors, numpy
// broadcasting plans, sliding-window geometry, Cast's conversion, and the parallel-loop helpers with their
// threshold.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <utility>
#include <vector>

#include "engine/ir.h"

namespace sparse24::engine::ops {

/// Below this many elements an op runs on one thread: spawning the team costs more than the work.
constexpr int64_t kParallelMinElements = 1 << 15;

/// Throws Error naming the node when `t` is not one of `allowed`; `what` names the input ("input A").
void require_dtype(const Node& node, const Tensor& t, std::initializer_list<DType> allowed, const char* what);
/// Throws Error naming the node when input `i` is absent (null or past the end).
const Tensor& required_input(const Node& node, std::span<const Tensor* const> in, size_t i);
/// The input at `i`, or null when absent.
const Tensor* optional_input(std::span<const Tensor* const> in, size_t i);
/// Axis in [-rank, rank) mapped to [0, rank); throws Error naming the node otherwise.
int normalize_axis(const Node& node, int64_t axis, int rank);
/// The elements of an i64 or i32 tensor (a shape, axes, indices list).
std::vector<int64_t> read_int_list(const Node& node, const Tensor& t, const char* what);
/// Product of shape[begin, end).
int64_t dims_product(const std::vector<int64_t>& shape, int begin, int end);
/// Row-major element strides of a shape.
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape);

/// The numpy broadcast of shapes; throws Error naming the node when they do not broadcast.
std::vector<int64_t> broadcast_shapes(const Node& node,
                                      std::initializer_list<const std::vector<int64_t>*> shapes);

/// How N inputs map onto a broadcast output, with adjacent dimensions merged wherever every input allows,
/// so that the innermost dimension is as long as possible. dims[0] is the innermost (fastest) dimension.
template <size_t N>
struct BroadcastPlan {
  std::vector<int64_t> dims;                    ///< merged output dims, innermost first
  std::array<std::vector<int64_t>, N> strides;  ///< per input, element stride per merged dim (0: broadcast)
  int64_t inner() const { return dims.empty() ? 1 : dims[0]; }
  int64_t outer() const;  ///< product of all merged dims but the innermost
  /// Element offsets of each input at the start of outer row `row`.
  std::array<int64_t, N> row_offsets(int64_t row) const;
};

/// Plans the broadcast of `inputs` onto `out_shape` (which must be their broadcast).
template <size_t N>
BroadcastPlan<N> plan_broadcast(const std::vector<int64_t>& out_shape,
                                const std::array<const std::vector<int64_t>*, N>& inputs);

/// Sliding-window geometry shared by Conv and the pools, per spatial dim (auto_pad resolved).
struct WindowGeometry {
  std::vector<int64_t> in, kernel, strides, dilations, pads_begin, pads_end, out;
  int rank() const { return int(in.size()); }
};

/// Reshape's target shape: 0 copies the input dim (unless the node's allowzero), one -1 is inferred; throws
/// Error naming the node when the element counts cannot match.
std::vector<int64_t> reshape_target(const Node& node, const std::vector<int64_t>& in_shape,
                                    std::vector<int64_t> shape);

/// A window geometry of 1 to 3 spatial dims seen as 3 dims: the missing leading dims have size 1, kernel 1,
/// stride 1 and no padding, so one loop nest serves 1-D, 2-D and 3-D convolution and pooling.
struct Window3 {
  std::array<int64_t, 3> in, k, s, d, pb, pe, out;
};
/// The 3-dim view of g.
Window3 to_window3(const WindowGeometry& g);

/// Reads strides, dilations, pads / auto_pad (and ceil_mode when `allow_ceil`) for a window of size `kernel`
/// over the spatial sizes `in`; throws Error naming the node on bad attributes or an empty output.
WindowGeometry window_geometry(const Node& node, const std::vector<int64_t>& in,
                               const std::vector<int64_t>& kernel, bool allow_ceil);

/// Engine-internal node attribute set by optimize.cc: "NHWC" when the node reads and writes channels-last
/// tensors [N][spatial...][C] (Conv, MaxPool; GlobalAveragePool reads them and writes [N][C][1...]).
inline constexpr const char* kLayoutAttr = "sparse24_layout";
bool channels_last(const Node& node);
/// [N][spatial...][C] -> [N][C][spatial...], and back.
std::vector<int64_t> channels_first_shape(const std::vector<int64_t>& nhwc);
std::vector<int64_t> channels_last_shape(const std::vector<int64_t>& nchw);

/// Converts every element to `to` with Cast's rules: floats to integers truncate toward zero and saturate,
/// integers to narrower integers wrap, f16/bf16 round to nearest even, anything nonzero is true.
Tensor cast_tensor(const Tensor& x, DType to);

/// A float Clip's bounds from its attributes [min, max] (before opset 11), or open (-inf, inf) from opset 11
/// on, where its optional inputs give them.
std::pair<float, float> clip_attribute_bounds(const Node& node);

/// Scratch for n elements: on the stack up to N of them, on the heap past that. The window ops' per-call
/// lists (a 3x3 window's 9 taps, a 2x2 pool's 4 offsets) then cost no allocation in the common case.
template <typename T, size_t N>
class SmallBuffer {
 public:
  explicit SmallBuffer(size_t n) : heap_(n > N ? n : 0) {}
  T* data() { return heap_.empty() ? stack_.data() : heap_.data(); }

 private:
  std::array<T, N> stack_;
  std::vector<T> heap_;
};

/// Calls body(i) for every i in [0, n): spread over the OpenMP team when `parallel`, else in order on this
/// thread without entering a parallel region (an `omp parallel for if (false)` still sets up a team of one:
/// 0.4-0.5 us on Zen 5, more than a small op's whole work; the demo's CNN at batch 1 ran 10 such ops).
template <typename F>
void parallel_for(int64_t n, bool parallel, F&& body) {
  if (!parallel || n <= 1) {  // one item: no team to start and join
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) body(i);
}

/// Calls f(begin, end) on contiguous pieces of [0, n), one per OpenMP thread when n is large enough to pay
/// for the team (each element belongs to exactly one piece, so results do not depend on the thread count).
template <typename F>
void parallel_ranges(int64_t n, F f) {
  if (n < kParallelMinElements) {
    if (n > 0) f(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = (n + threads - 1) / threads, begin = std::min(n, t * chunk),
                  end = std::min(n, begin + chunk);
    if (begin < end) f(begin, end);
  }
}

/// y = f(x) element by element for an f32 tensor (Error naming the node for another dtype).
template <typename F>
void map_f32(const Node& node, const Tensor& x, Tensor& y, F f) {
  require_dtype(node, x, {DType::f32}, "input");
  y = Tensor::uninitialized(DType::f32, x.shape());
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  const int64_t n = x.numel();
  parallel_ranges(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) dst[i] = f(src[i]);
  });
}

/// y = kernel(x) over an f32 tensor, the kernel called on one contiguous piece per thread.
inline void map_f32_kernel(const Node& node, const Tensor& x, Tensor& y,
                           void (*kernel)(const float*, float*, int64_t)) {
  require_dtype(node, x, {DType::f32}, "input");
  y = Tensor::uninitialized(DType::f32, x.shape());
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  parallel_ranges(x.numel(),
                  [&](int64_t begin, int64_t end) { kernel(src + begin, dst + begin, end - begin); });
}

/// Copies `src` broadcast to `out_shape` into a new tensor (any dtype); Expand and materialised operands.
Tensor broadcast_to(const Tensor& src, const std::vector<int64_t>& out_shape);

}  // namespace sparse24::engine::ops
