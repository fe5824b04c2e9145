// AVX-512 build of the vector math (libmvec's 16-wide variants); called only when the CPU has AVX-512.
#include <math.h>

#include <cstdint>

namespace sparse24::engine::vmath::avx512 {
#include "engine/vector_math_impl.inc"
}  // namespace sparse24::engine::vmath::avx512
