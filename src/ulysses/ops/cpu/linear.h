// CPU fp32 kernels of the linear layer (no argument validation: see ops/linear.h).
#pragma once

#include <cstdint>

namespace ulysses::ops::cpu {

// x: [N, K], weight: [M, K], bias: [M] or nullptr -> y: [N, M] written.
void linear_forward(const float* x, const float* weight, const float* bias, float* y,
                    std::int64_t N, std::int64_t K, std::int64_t M);

// y: [N, M] = x W^T + bias + residual written; residual may be y itself (then y += ...).
void linear_forward_residual(const float* x, const float* weight, const float* bias,
                             const float* residual, float* y, std::int64_t N, std::int64_t K,
                             std::int64_t M);

// x: [N, K], weight: [M, K], dy: [N, M] -> dx: [N, K] += (skipped when nullptr),
// dweight: [M, K] +=, dbias: [M] += (skipped when nullptr).
// dx_overwrite: dx = dy W (dx not read) instead of +=.
void linear_backward(const float* x, const float* weight, const float* dy, float* dx,
                     float* dweight, float* dbias, std::int64_t N, std::int64_t K, std::int64_t M,
                     bool dx_overwrite = false);

}  // namespace ulysses::ops::cpu
