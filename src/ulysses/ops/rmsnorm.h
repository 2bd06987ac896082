// RMSNorm as in Llama/Qwen: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.
// Also used for Qwen3's per-head q/k norm: view q as [T * H, D] with a weight of [D].
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// x: [..., C], weight: [C] -> y: [..., C] written, rstd: [numel/C] written
// (rstd = 1 / sqrt(mean(x^2) + eps), saved for backward).
void rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& weight, float eps,
                     Tensor y, Tensor rstd);

// dx: [..., C] += dL/dx; dweight: [C] += dL/dweight. dx must not alias dy.
// Dtypes: x, weight, y, dy, dx one dtype (f32 on CPU; f32 or bf16 on CUDA); rstd and dweight
// f32 on every device. CUDA: dweight is reduced deterministically (no atomics).
void rmsnorm_backward(const Context& ctx, const Tensor& x, const Tensor& weight,
                      const Tensor& rstd, const Tensor& dy, Tensor dx, Tensor dweight);

}  // namespace ulysses::ops
