// CUDA kernels of ops/qk_norm_rope.h (validated by ops/qk_norm_rope.cc). weight undefined: RoPE
// only. Statistics and rotation in f32.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

void qk_norm_rope_forward(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& x,
                          const Tensor& weight, float eps, Tensor out, Tensor rstd);
void qk_norm_rope_backward(const Context& ctx, const Tensor& cos, const Tensor& sin,
                           const Tensor& x, const Tensor& weight, const Tensor& rstd,
                           const Tensor& dout, Tensor dx, Tensor dweight);

}  // namespace ulysses::ops::cuda
