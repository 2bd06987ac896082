// CUDA kernels of ops/swiglu.h (validated by ops/swiglu.cc). All tensors one dtype, f32 or bf16.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

void swiglu_forward(const Context& ctx, const Tensor& gate, const Tensor& up, Tensor out);
// overwrite: dgate and dup written, not read (else accumulated).
void swiglu_backward(const Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                     Tensor dgate, Tensor dup, bool overwrite = false);

}  // namespace ulysses::ops::cuda
