// Causal variable-length attention with grouped-query heads.
//
// Documents packed into one sequence are described by cu_seqlens; a query attends to the keys of
// its own document at positions <= its own, never across a document boundary. The CPU kernel is
// blockwise with an online softmax (memory O(T * D), never O(T^2)) and saves the log-sum-exp
// of every query row so backward recomputes probabilities without a second softmax pass.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/grad_write.h"
#include "ulysses/ops/indices.h"

namespace ulysses::ops {

// q: [T, Hq, D]; k, v: [T, Hkv, D] with Hq % Hkv == 0 (query head h reads kv head
// h / (Hq / Hkv), as Transformers' repeat_kv); cu_seqlens: [n + 1] i32, non-decreasing,
// cu_seqlens[0] == 0, cu_seqlens[n] == T (empty documents allowed).
// scale multiplies q.k (1/sqrt(D) for every supported model).
// out: [T, Hq, D] written; lse: [Hq, T] f32 written (natural-log sum of exp of scaled scores).
// Block size: ctx.attention_block (CPU; any T works, not only multiples of it).
// Dtypes: CPU: q, k, v, out (and dout, dq, dk, dv) f32. CUDA: those bf16, 16-byte aligned; lse
// f32 on every device. The cu_seqlens values are checked on the host: the copy passed with them
// (ops/indices.h), else one read back (on CUDA a host synchronization).
// CUDA kernels (ctx.attention_kernel): cuDNN's fused engine (head_dim a multiple of 8 up to 128;
// backward not bitwise deterministic) with the built-in kernel (head_dim 64 or 128,
// deterministic) as fallback; Error when neither can run the call.
void attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Indices& cu_seqlens, float scale, Tensor out, Tensor lse);

// Given out and lse from the forward: dq += dL/dq, dk += dL/dk, dv += dL/dv (same shapes as
// q, k, v; the gradients of query heads sharing a kv head are summed into it). With
// GradWrite::overwrite all three are written (=), their old contents not read.
void attention_backward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Indices& cu_seqlens, float scale, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, Tensor dq, Tensor dk, Tensor dv,
                        GradWrite write = GradWrite::accumulate);

}  // namespace ulysses::ops
