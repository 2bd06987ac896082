// CUDA kernels of ops/attention.h (validated by ops/attention.cc): causal varlen GQA attention,
// flash-attention style on the tensor cores (WMMA, bf16 inputs, f32 accumulation).
// q, k, v, out, dout, dq, dk, dv: bf16, 16-byte aligned; lse: f32; cu_seqlens: i32 on the
// device; head_dim 64 or 128.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

// Whether the kernels support this head dimension.
bool attention_supports_head_dim(std::int64_t head_dim);

// Per (query head, block of 64 queries): online softmax over the key blocks of the queries'
// documents, f32 statistics; out in bf16, lse = natural-log sum of exp of the scaled scores.
void attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, float scale, Tensor out, Tensor lse);

// Deterministic (no atomics): dk/dv per (kv head, block of 64 keys) looping over the query heads
// of the group; dq per (query head, block of 64 queries) in a second kernel. Gradients are
// accumulated (+=) into the bf16 outputs.
void attention_backward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& cu_seqlens, float scale, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, Tensor dq, Tensor dk, Tensor dv);

}  // namespace ulysses::ops::cuda
