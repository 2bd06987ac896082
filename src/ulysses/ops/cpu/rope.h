// CPU fp32 kernels of rotary position embedding (no argument validation: see ops/rope.h).
#pragma once

#include <cstdint>

namespace ulysses::ops::cpu {

// cos, sin: [T, D/2]; x: [T, H, D] -> out: [T, H, D] written. out may equal x (in place).
void rope_forward(const float* cos, const float* sin, const float* x, float* out, std::int64_t T,
                  std::int64_t H, std::int64_t D);

// cos, sin: [T, D/2]; dout: [T, H, D] -> dx: [T, H, D] += the inverse rotation of dout.
void rope_backward(const float* cos, const float* sin, const float* dout, float* dx, std::int64_t T,
                   std::int64_t H, std::int64_t D);

}  // namespace ulysses::ops::cpu
