// CPU fp32 kernels of RMSNorm (no argument validation: see ops/rmsnorm.h).
#pragma once

#include <cstdint>

namespace ulysses::ops::cpu {

// x: [N, C], weight: [C] -> y: [N, C] written, rstd: [N] written.
void rmsnorm_forward(const float* x, const float* weight, float eps, float* y, float* rstd,
                     std::int64_t N, std::int64_t C);

// x, dy: [N, C], weight: [C], rstd: [N] -> dx: [N, C] +=, dweight: [C] +=.
void rmsnorm_backward(const float* x, const float* weight, const float* rstd, const float* dy,
                      float* dx, float* dweight, std::int64_t N, std::int64_t C);

}  // namespace ulysses::ops::cpu
