// AVX2+FMA build of the vector math (libmvec's 8-wide variants); called only when the CPU has AVX2.
#include <math.h>

#include <cstdint>

namespace sparse24::engine::vmath::avx2 {
#include "engine/vector_math_impl.inc"
}  // namespace sparse24::engine::vmath::avx2
