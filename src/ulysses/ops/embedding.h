// Token embedding lookup.
//
// Conventions for every op in ops/: inputs are const Tensor&; outputs are Tensor handles passed
// by value (they share storage with the caller's tensor, so views such as x.rows(a, b) can be
// passed). Forward outputs are overwritten. Backward gradient outputs are ACCUMULATED (+=), so
// micro-steps, tiles and residual branches add up without copies; callers zero them first.
// The CPU backend computes in f32; integer inputs (ids, positions, labels, cu_seqlens) are i32.
// Dtypes on CUDA (all ops): weights and activations f32 or bf16 (one dtype per call, normally
// ctx.compute_dtype = bf16), statistics (rstd, lse) and weight gradients f32, f32 arithmetic.
// Each op's header lists its own rule; on CPU every float tensor is f32.
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/indices.h"

namespace ulysses::ops {

// ids: [T] i32, each in [0, V); table: [V, C] -> out: [T, C] written.
// An id outside [0, V) throws Error naming the position and the vocabulary size.
// The ids are checked on the host: the copy passed with them (ops/indices.h), else one read
// back (on CUDA a host synchronization). CUDA: table and out f32 or bf16 (alike).
void embedding_forward(const Context& ctx, const Indices& ids, const Tensor& table, Tensor out);

// dtable: [V, C] += the rows of dout: [T, C] scattered by ids (deterministic order).
// CUDA: dout f32 or bf16, dtable f32; the ids are checked and grouped by id on the host (their
// host copy as for the forward), the grouping uploaded without a host wait.
void embedding_backward(const Context& ctx, const Indices& ids, const Tensor& dout, Tensor dtable);

}  // namespace ulysses::ops
