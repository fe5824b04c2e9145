#include "engine/vector_math.h"

#include "kernels/cpu/isa.h"

namespace sparse24::engine::vmath {

#define S24_VMATH_DECLARE(isa)                                          \
  namespace isa {                                                       \
  void exp_inplace(float* x, int64_t n);                                \
  void erf(const float* x, float* y, int64_t n);                        \
  void tanh(const float* x, float* y, int64_t n);                       \
  void sigmoid(const float* x, float* y, int64_t n);                    \
  void gelu_inplace(float* x, int64_t n);                               \
  void softmax_rows(float* x, int64_t rows, int64_t n, bool log);       \
  }
S24_VMATH_DECLARE(sse)
S24_VMATH_DECLARE(avx2)
S24_VMATH_DECLARE(avx512)
#undef S24_VMATH_DECLARE

namespace {
// The ISA is fixed for the process (detection, or SPARSE24_ISA): decide once.
cpu::Isa level() {
  static const cpu::Isa isa = cpu::active_isa();
  return isa;
}
}  // namespace

#define S24_VMATH_DISPATCH(call)                    \
  switch (level()) {                                \
    case cpu::Isa::avx512: return avx512::call;     \
    case cpu::Isa::avx2: return avx2::call;         \
    default: return sse::call;                      \
  }

void exp_inplace(float* x, int64_t n) { S24_VMATH_DISPATCH(exp_inplace(x, n)) }
void erf(const float* x, float* y, int64_t n) { S24_VMATH_DISPATCH(erf(x, y, n)) }
void tanh(const float* x, float* y, int64_t n) { S24_VMATH_DISPATCH(tanh(x, y, n)) }
void sigmoid(const float* x, float* y, int64_t n) { S24_VMATH_DISPATCH(sigmoid(x, y, n)) }
void gelu_inplace(float* x, int64_t n) { S24_VMATH_DISPATCH(gelu_inplace(x, n)) }
void softmax_rows(float* x, int64_t rows, int64_t n, bool log) { S24_VMATH_DISPATCH(softmax_rows(x, rows, n, log)) }

#undef S24_VMATH_DISPATCH

}  // namespace sparse24::engine::vmath
