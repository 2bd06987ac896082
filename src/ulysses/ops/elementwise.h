// Small elementwise and reduction helpers used by the model, the trainer and gradient clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// Dtypes: f32 on CPU; on CUDA f32 or bf16 (y and x of add_inplace alike), arithmetic in f32.

// y += x (same shape).
void add_inplace(const Context& ctx, Tensor y, const Tensor& x);
// x *= factor.
void scale_inplace(const Context& ctx, Tensor x, float factor);
// Sum of x^2 accumulated in double (deterministic order). CUDA: fixed grid and fixed-order
// reductions, so deterministic too; synchronizes the host with the stream to return the value.
double sum_of_squares(const Context& ctx, const Tensor& x);
// The same sum, bit for bit, without the wait: written to sums[slot] in stream order (sums: a
// [k] i64 tensor on the context's device, each element a double's bits), so the sums of several
// tensors come back with one read_sums (one host synchronization on CUDA).
void sum_of_squares_into(const Context& ctx, const Tensor& x, Tensor sums, std::int64_t slot);
std::vector<double> read_sums(const Context& ctx, const Tensor& sums);
// dst = src converted to dst's dtype (f32 <-> bf16, or a plain copy; same shape, both on the
// context's device). Rounds to nearest even into bf16.
void convert(const Context& ctx, const Tensor& src, Tensor dst);

}  // namespace ulysses::ops
