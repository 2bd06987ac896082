// Linear layer y = x W^T + b with Hugging Face's weight layout [out_features, in_features].
// CPU: OpenBLAS sgemm. CUDA: cuBLASLt (fp32 accumulation; descriptors cached per shape).
// Dtypes: x, weight, bias, y, dy, dx one dtype (f32 on CPU; f32 or bf16 on CUDA); dweight and
// dbias f32 on every device (CUDA accumulates dweight with an f32-output product, beta = 1).
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
