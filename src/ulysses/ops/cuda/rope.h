// CUDA kernels of ops/rope.h (validated by ops/rope.cc).
// x, out, dout, dx: one dtype, f32 or bf16; the cos/sin tables: f32 on the device.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

// out may be x (in place).
void rope_forward(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& x,
                  Tensor out);
void rope_backward(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& dout,
                   Tensor dx);

}  // namespace ulysses::ops::cuda
