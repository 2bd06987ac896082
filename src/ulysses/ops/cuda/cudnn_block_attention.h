// Ring attention's block pairs on cuDNN's fused attention (ops/block_attention.h; validated
// there), through the ragged SDPA of cudnn_attention.h. Internal to ops/block_attention.cc.
//
// The pair is classified on the host (ops/block_pair.h): a diagonal pair is causal attention of
// one batch entry per document that meets the range; a pair with every key before every query is
// one entry without a causal mask (the document of the first query, its queries against its
// keys). The per-entry lengths and offsets are computed on the device from cu_seqlens (no copy
// to the host). cuDNN works in bf16: forward writes a bf16 block output to a temporary, then one
// kernel widens it into the f32 out (rows of no entry: out 0, lse -inf); backward passes the
// final output rounded to bf16 (the value the model saw) and the final lse, and adds cuDNN's
// bf16 dq, dk, dv into the f32 accumulators (only the rows the entry covers).
// Temporaries per call (caching allocator), for Tq query and Tk key tokens: forward Tq Hq D
// bf16 (the block output) + cuDNN's workspace; backward 8 Tq Hq D bytes (out in bf16, cuDNN's
// bf16 dq and its f32 accumulator) + 4 Tk Hkv D bytes (bf16 dk, dv) + 4 Hq Tq bytes (rowsum of
// dout * out) + cuDNN's workspace. The reference kernel needs only the 4 Hq Tq bytes.
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/block_pair.h"

namespace ulysses::ops::cuda {

// pair: classify_block_pair of this placement, diagonal or before. q, k, v bf16; out, lse f32;
// all 16-byte aligned. Writes out and lse; false (nothing written) when cuDNN cannot run it
// (not loaded, the shape refused, f32 inputs, unaligned tensors).
bool cudnn_block_attention_forward(const Context& ctx, const Tensor& q, const Tensor& k,
                                   const Tensor& v, const Tensor& cu_seqlens, std::int64_t q_begin,
                                   const BlockPair& pair, float scale, Tensor out, Tensor lse);

// out, lse: the final (merged) output and lse; dq, dk, dv (f32) += this pair's share.
bool cudnn_block_attention_backward(const Context& ctx, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& cu_seqlens, std::int64_t q_begin,
                                    const BlockPair& pair, float scale, const Tensor& out,
                                    const Tensor& lse, const Tensor& dout, Tensor dq, Tensor dk,
                                    Tensor dv);

// A pair no query of which sees a key: out 0, lse -inf (f32). False (nothing written) unless
// head_dim % 8 == 0 and out is 16-byte aligned (the reference kernel then writes them).
bool block_attention_masked_forward(const Context& ctx, Tensor out, Tensor lse);

}  // namespace ulysses::ops::cuda
