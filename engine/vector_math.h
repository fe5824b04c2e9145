#pragma once
// Vectorized element-wise math for the hot loops of the engine (softmax, GELU, erf, tanh, sigmoid),
// through glibc's vector math library (libmvec, <= 4 ulp) with the widest ISA this CPU runs.
#include <cstdint>

namespace sparse24::engine::vmath {

/// x = exp(x), element-wise.
void exp_inplace(float* x, int64_t n);
/// y = erf(x).
void erf(const float* x, float* y, int64_t n);
/// y = tanh(x).
void tanh(const float* x, float* y, int64_t n);
/// y = 1 / (1 + exp(-x)).
void sigmoid(const float* x, float* y, int64_t n);
/// x = x · Φ(x) = 0.5·x·(1 + erf(x/√2)), element-wise in place.
void gelu_inplace(float* x, int64_t n);
/// Softmax (log_softmax when `log`) of each of `rows` contiguous rows of length n, in place.
void softmax_rows(float* x, int64_t rows, int64_t n, bool log);

}  // namespace sparse24::engine::vmath
