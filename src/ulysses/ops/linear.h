// Linear layer y = x W^T + b with Hugging Face's weight layout [out_features, in_features].
// CPU: OpenBLAS sgemm. CUDA: cuBLASLt (fp32 accumulation; descriptors cached per shape).
// Dtypes: x, weight, bias, y, dy, dx one dtype (f32 on CPU; f32 or bf16 on CUDA); dweight and
// dbias f32 on every device (CUDA accumulates dweight with an f32-output product, beta = 1).
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/grad_write.h"

namespace ulysses::ops {

// x: [N, K], weight: [M, K], bias: [M] or undefined -> y: [N, M] written.
void linear_forward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    Tensor y);

// y = x W^T + b + residual: the residual add as the product's epilogue (cuBLASLt reads residual
// as its C matrix with beta = 1), so no separate add_inplace pass. residual: [N, M] of y's dtype;
// residual may be y itself (y += x W^T + b). Shapes and dtypes as linear_forward.
void linear_forward_residual(const Context& ctx, const Tensor& x, const Tensor& weight,
                             const Tensor& bias, const Tensor& residual, Tensor y);

// dx: [N, K] += dy W (skipped when dx is undefined; = with GradWrite::overwrite);
// dweight: [M, K] += dy^T x; dbias: [M] += column sums of dy (skipped when undefined).
void linear_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& dy,
                     Tensor dx, Tensor dweight, Tensor dbias,
                     GradWrite dx_write = GradWrite::accumulate);

}  // namespace ulysses::ops
