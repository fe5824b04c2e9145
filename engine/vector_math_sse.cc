// Baseline x86-64 build of the vector math (libmvec's 4-wide SSE variants), for any CPU.
#include <math.h>

#include <cstdint>

namespace sparse24::engine::vmath::sse {
#include "engine/vector_math_impl.inc"
}  // namespace sparse24::engine::vmath::sse
