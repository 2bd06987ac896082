// Qwen3's per-head q/k RMSNorm fused with the rotary embedding that follows it: one pass over
// q (or k) instead of rmsnorm_forward on [T * H, D] then rope_forward. Without a norm weight it
// is RoPE alone (Llama: no q/k norm), with a backward that writes instead of accumulating.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/rope.h"

namespace ulysses::ops {

// x: [T, H, D] (the projection) -> out = rope(rmsnorm(x over each head's D values) * weight):
// [T, H, D] written (out may be x itself), rstd: [T * H] f32 written.
// weight undefined: out = rope(x) and rstd must be undefined too.
// On bf16 the normalized value is rounded to bf16 before the rotation, as the two separate ops
// store it.
void qk_norm_rope_forward(const Context& ctx, const RopeTable& table, const Tensor& x,
                          const Tensor& weight, float eps, Tensor out, Tensor rstd);

// dout: [T, H, D] (gradient of out) -> dx: [T, H, D] WRITTEN (not accumulated), dweight: [D] f32
// += (weight defined). x, weight, rstd are the forward's (x and rstd unused without weight;
// pass undefined tensors). dx must not alias dout.
// Dtypes: x, weight, out, dout, dx one dtype (f32 on CPU; f32 or bf16 on CUDA); rstd, dweight
// and the table f32. CUDA: dweight reduced deterministically (no atomics).
void qk_norm_rope_backward(const Context& ctx, const RopeTable& table, const Tensor& x,
                           const Tensor& weight, const Tensor& rstd, const Tensor& dout, Tensor dx,
                           Tensor dweight);

}  // namespace ulysses::ops
