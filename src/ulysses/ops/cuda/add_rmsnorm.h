// CUDA kernels of ops/add_rmsnorm.h (validated by ops/add_rmsnorm.cc), and the row kernel of
// the RMSNorm input gradient shared with ops/cuda/rmsnorm.cu.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

void add_rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& r, const Tensor& weight,
                         float eps, Tensor y, Tensor n, Tensor rstd);
void add_rmsnorm_backward(const Context& ctx, const Tensor& y, const Tensor& weight,
                          const Tensor& rstd, const Tensor& dn, const Tensor& dresidual, Tensor dy,
                          Tensor dweight);

// dx = dresidual + rstd * w * dn - x * rstd^3 * mean(x * w * dn), row by row (dx may be
// dresidual: rmsnorm_backward's accumulation). 16-byte accesses when C % 8 == 0 and aligned.
void rmsnorm_input_grad(const Context& ctx, const Tensor& x, const Tensor& weight,
                        const Tensor& rstd, const Tensor& dn, const Tensor& dresidual, Tensor dx);
// dweight [C] += sum over rows of dn * x * rstd (deterministic).
void rmsnorm_weight_grad(const Context& ctx, const Tensor& x, const Tensor& rstd, const Tensor& dn,
                         Tensor dweight);

}  // namespace ulysses::ops::cuda
