// CUDA kernels of ops/rmsnorm.h (validated by ops/rmsnorm.cc).
// x, weight, y, dy, dx: one dtype, f32 or bf16; rstd and dweight: f32. Statistics in f32.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

void rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& weight, float eps,
                     Tensor y, Tensor rstd);
// dweight is reduced deterministically (per-chunk partials, fixed-order sum; no atomics).
void rmsnorm_backward(const Context& ctx, const Tensor& x, const Tensor& weight,
                      const Tensor& rstd, const Tensor& dy, Tensor dx, Tensor dweight);

}  // namespace ulysses::ops::cuda
