// Residual add fused with the RMSNorm that follows it (the pre-norm decoder's
// `x_mid = x + attn; xn2 = rmsnorm(x_mid)` and the next layer's input norm): one pass writes the
// residual stream and its normalized copy.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// x, r: [..., C] -> y = x + r: [..., C] written (the residual stream; y may be x or r itself),
// n = rmsnorm(y) * weight: [..., C] written, rstd: [numel/C] f32 written.
// The norm is computed from y as stored (rounded to bf16 on bf16 tensors), so the result equals
// add_inplace followed by rmsnorm_forward. n must not alias x, r or y.
void add_rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& r, const Tensor& weight,
                         float eps, Tensor y, Tensor n, Tensor rstd);

// Backward of add_rmsnorm_forward: dy = dresidual + (dL/dy through the norm, from dn) written
// (the gradient of both x and r; dy may be dresidual itself, in place), dweight: [C] f32 +=.
// y and rstd are the forward's. dy must not alias dn.
// Dtypes: x, r, weight, y, n, dn, dresidual, dy one dtype (f32 on CPU; f32 or bf16 on CUDA);
// rstd, dweight f32. CUDA: dweight reduced deterministically (no atomics).
void add_rmsnorm_backward(const Context& ctx, const Tensor& y, const Tensor& weight,
                          const Tensor& rstd, const Tensor& dn, const Tensor& dresidual, Tensor dy,
                          Tensor dweight);

}  // namespace ulysses::ops
