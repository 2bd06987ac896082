// Element types and bf16 conversion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace ulysses {

enum class DType : std::uint8_t { f32, bf16, i32, i64 };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

// bfloat16 storage: the upper 16 bits of an IEEE float32.
struct bf16 {
  std::uint16_t bits;
};

// Round to nearest even; NaN stays NaN (quiet), infinities stay infinities.
inline bf16 float_to_bf16(float value) {
  std::uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<std::uint16_t>((u >> 16) | 0x40u)};
  const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<std::uint16_t>((u + rounding) >> 16)};
}

inline float bf16_to_float(bf16 value) {
  const std::uint32_t u = static_cast<std::uint32_t>(value.bits) << 16;
  float out;
  std::memcpy(&out, &u, sizeof out);
  return out;
}

// IEEE half precision (read from F16 safetensors only).
float half_bits_to_float(std::uint16_t bits);

// Maps a C++ element type to its DType (for Tensor::data<T>() checks).
template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<std::int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<std::int64_t> {
  static constexpr DType value = DType::i64;
};

}  // namespace ulysses
