// CUDA kernels of ops/elementwise.h (validated by ops/elementwise.cc). T = f32 or bf16.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

void add_inplace(const Context& ctx, Tensor y, const Tensor& x);
void scale_inplace(const Context& ctx, Tensor x, float factor);
// Deterministic (fixed grid and fixed-order reductions, double accumulation); synchronizes the
// host with the stream to return the value.
double sum_of_squares(const Context& ctx, const Tensor& x);
void convert(const Context& ctx, const Tensor& src, Tensor dst);

}  // namespace ulysses::ops::cuda
