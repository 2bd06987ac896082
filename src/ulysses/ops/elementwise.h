// Small elementwise and reduction helpers used by the model, the trainer and gradient clipping.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// y += x (same shape).
void add_inplace(const Context& ctx, Tensor y, const Tensor& x);
// x *= factor.
void scale_inplace(const Context& ctx, Tensor x, float factor);
// Sum of x^2 accumulated in double (deterministic order).
double sum_of_squares(const Context& ctx, const Tensor& x);

}  // namespace ulysses::ops
