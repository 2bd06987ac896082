// CUDA kernels of the block attention with statistics and its merge (ops/block_attention.h;
// validated there). q, k, v, dout: f32 or bf16 (one dtype); out, lse, dq, dk, dv, block_out,
// block_lse: f32. cu_seqlens: i32 on the device (searched on the device, never copied back).
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

void block_attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& cu_seqlens, std::int64_t q_begin, std::int64_t k_begin,
                             float scale, Tensor out, Tensor lse);

void block_attention_backward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& cu_seqlens, std::int64_t q_begin, std::int64_t k_begin,
                              float scale, const Tensor& out, const Tensor& lse, const Tensor& dout,
                              Tensor dq, Tensor dk, Tensor dv);

void attention_merge(const Context& ctx, Tensor out, Tensor lse, const Tensor& block_out,
                     const Tensor& block_lse);

}  // namespace ulysses::ops::cuda
