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
// The sum written to out (a double on the device) in stream order; no synchronization.
void sum_of_squares_into(const Context& ctx, const Tensor& x, double* out);
// n doubles from the device to host memory (synchronizes the host with the stream).
void read_doubles(const Context& ctx, const double* device, double* host, std::int64_t n);
void convert(const Context& ctx, const Tensor& src, Tensor dst);

}  // namespace ulysses::ops::cuda
