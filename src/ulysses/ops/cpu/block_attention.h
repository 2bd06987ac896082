// CPU fp32 kernels of the block attention with statistics and its merge (see
// ops/block_attention.h). No argument validation here: the ops:: functions validate, then
// dispatch.
#pragma once

#include <cstdint>

namespace ulysses::ops::cpu {

// Sizes and global placement of one (query block, key block) pair.
struct BlockAttentionShape {
  std::int64_t query_tokens;  // Tq: q holds global tokens [query_begin, query_begin + Tq)
  std::int64_t key_tokens;    // Tk: k, v hold global tokens [key_begin, key_begin + Tk)
  std::int64_t query_begin;
  std::int64_t key_begin;
  std::int64_t query_heads;    // Hq
  std::int64_t kv_heads;       // Hkv (divides Hq)
  std::int64_t head_dim;       // D
  std::int64_t num_documents;  // n (cu_seqlens has n + 1 entries, global)
  std::int64_t block;          // tile size (> 0)
};

// q: [Tq, Hq, D]; k, v: [Tk, Hkv, D] -> out: [Tq, Hq, D], lse: [Hq, Tq] written (rows that see
// no key of this block: out 0, lse -inf).
void block_attention_forward(const BlockAttentionShape& shape, const float* q, const float* k,
                             const float* v, const std::int32_t* cu_seqlens, float scale,
                             float* out, float* lse);

// out, lse: the *final* (merged over every key block) output [Tq, Hq, D] and lse [Hq, Tq] of
// these queries; dout: [Tq, Hq, D]. dq [Tq, Hq, D], dk, dv [Tk, Hkv, D] are accumulated (+=)
// with this key block's share of the gradients.
void block_attention_backward(const BlockAttentionShape& shape, const float* q, const float* k,
                              const float* v, const std::int32_t* cu_seqlens, float scale,
                              const float* out, const float* lse, const float* dout, float* dq,
                              float* dk, float* dv);

// Exact merge of a block's result into an accumulated one, per (row, head):
// lse' = log(exp(lse) + exp(block_lse)); out' = out exp(lse - lse') + block_out exp(block_lse -
// lse'). out, block_out: [T, H, D]; lse, block_lse: [H, T]. A side with lse -inf contributes
// nothing.
void attention_merge(std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, float* out,
                     float* lse, const float* block_out, const float* block_lse);

}  // namespace ulysses::ops::cpu
