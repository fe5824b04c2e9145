#pragma once
// Element types sparse24 stores weights and activations in, and exact conversions between them.
#include <cstdint>
#include <cstring>
#include <string_view>

namespace sparse24 {

/// Element type of a tensor. i32 is for accumulators and integer results; i64 and boolean (one byte, 0 or 1)
/// carry indices, shapes and masks through the engine.
enum class DType : uint8_t { f32, f16, bf16, i8, i32, i64, boolean };

/// Bytes per element.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f16:
      return 2;
    case DType::bf16:
      return 2;
    case DType::i8:
      return 1;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
    case DType::boolean:
      return 1;
  }
  return 0;
}

/// Short lower-case name ("f32", "bf16", ...).
std::string_view dtype_name(DType t);

/// Parses a dtype name; throws Error on anything else.
DType parse_dtype(std::string_view name);

/// IEEE binary16 bits -> float (exact).
float f16_to_f32(uint16_t h);
/// float -> IEEE binary16 bits, round to nearest even; overflow gives Inf, NaN stays NaN.
uint16_t f32_to_f16(float f);

/// bfloat16 bits -> float (exact).
inline float bf16_to_f32(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
/// float -> bfloat16 bits, round to nearest even; NaN stays NaN.
uint16_t f32_to_bf16(float f);

}  // namespace sparse24
