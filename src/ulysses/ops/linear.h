// Linear layer y = x W^T + b with Hugging Face's weight layout [out_features, in_features].
// CPU: OpenBLAS sgemm.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// x: [N, K], weight: [M, K], bias: [M] or undefined -> y: [N, M] written.
void linear_forward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    Tensor y);

// dx: [N, K] += dy W (skipped when dx is undefined); dweight: [M, K] += dy^T x;
// dbias: [M] += column sums of dy (skipped when undefined).
void linear_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& dy,
                     Tensor dx, Tensor dweight, Tensor dbias);

}  // namespace ulysses::ops
