// SwiGLU gate of the Llama/Qwen MLP: h = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/grad_write.h"

namespace ulysses::ops {

// gate, up: [N, I] -> out: [N, I] written.
void swiglu_forward(const Context& ctx, const Tensor& gate, const Tensor& up, Tensor out);

// dgate += dout * up * silu'(gate); dup += dout * silu(gate). All [N, I]. With
// GradWrite::overwrite both are written (=), their old contents not read.
// Dtypes: every tensor f32 on CPU; on CUDA f32 or bf16, all alike (f32 arithmetic).
void swiglu_backward(const Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                     Tensor dgate, Tensor dup, GradWrite write = GradWrite::accumulate);

}  // namespace ulysses::ops
