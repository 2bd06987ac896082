// CUDA kernels of ops/linear.h (validated by ops/linear.cc), through cuBLASLt.
// x, weight, bias, y, dy, dx: one dtype, f32 or bf16; dweight and dbias: f32 (accumulated by
// f32-output products with beta = 1). fp32 accumulation; the f32 path uses no TF32.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

void linear_forward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    Tensor y);
// y = x W^T + bias + residual in one product (cuBLASLt's C = residual, beta = 1).
void linear_forward_residual(const Context& ctx, const Tensor& x, const Tensor& weight,
                             const Tensor& bias, const Tensor& residual, Tensor y);
// dbias is reduced deterministically (no atomics).
// dx_overwrite: dx = dy W (beta 0, dx not read) instead of +=.
void linear_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& dy,
                     Tensor dx, Tensor dweight, Tensor dbias, bool dx_overwrite = false);

}  // namespace ulysses::ops::cuda
