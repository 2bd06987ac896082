// Block attention with softmax statistics, and the exact merge of blocks: the pieces of ring
// attention.
//
// Attention of a query block over a sequence split into key blocks is exact when every block
// returns its output together with the log-sum-exp (lse) of its scores: outputs merge by their
// lse (attention_merge), and the backward of each block needs only the *final* (merged) output
// and lse, as in FlashAttention's ring variants.
//
// Placement: q holds the global tokens [q_begin, q_begin + Tq) of one packed sequence, k and v
// its global tokens [k_begin, k_begin + Tk); cu_seqlens are the whole sequence's document
// boundaries ([n + 1] i32, cu_seqlens[0] == 0, non-decreasing, both ranges inside
// [0, cu_seqlens[n])). A query at global position i sees the key at global position j when
// both are in the same document and j <= i: the mask of ops::attention_forward restricted to
// the block pair, so the blocks may overlap, be disjoint, be fully masked or partly visible, and
// documents may cross their borders. GQA as in ops/attention.h (query head h reads kv head
// h / (Hq / Hkv)); k and v are never repeated.
// cu_host: the same boundaries on the host (data::SequenceShard::cu_seqlens_host), or empty.
// The CPU checks the cu_seqlens values (and cu_host against them) and the placement. CUDA reads
// cu_seqlens on the device only (no host synchronization), so they must be valid; it plans from
// cu_host, checking the placement against it.
// Dtypes: q, k, v, dout: f32 on the CPU, f32 or bf16 (one dtype) on CUDA; out, lse, block_out,
// block_lse, dq, dk, dv: f32 on every device (accumulators: merges and the sums over key blocks
// never round to bf16).
// CUDA kernels (ops/block_pair.h classifies the pair on the host from cu_host):
//   - diagonal pairs (the same range) and pairs with every key before every query: cuDNN's
//     fused flash attention (ops/cuda/cudnn_block_attention.h), bf16 inputs, head_dim a multiple
//     of 8 up to 128. cuDNN computes in bf16 blocks: a block's output is rounded to bf16 before
//     it is widened into the f32 out, and each block's dq, dk, dv are rounded to bf16 before
//     they are added into the f32 accumulators; backward reads out rounded to bf16. Not
//     bitwise deterministic (cuDNN sums dQ with atomics).
//   - fully masked pairs: forward writes out 0, lse -inf; backward does nothing.
//   - everything else (cu_host empty, ctx.attention_kernel builtin, other placements, f32
//     inputs, cuDNN missing or refusing the shape): the reference kernel, a plain one (one warp
//     per row; head_dim <= 256; deterministic), not tuned. With ctx.attention_kernel cudnn a
//     diagonal or before pair that cuDNN cannot run is an Error instead.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// Which kernel ran a block call (tests and benchmarks check it; callers may ignore it).
enum class BlockAttentionPath { cpu, reference, cudnn, masked };

// q: [Tq, Hq, D]; k, v: [Tk, Hkv, D] -> out: [Tq, Hq, D] and lse: [Hq, Tq] f32 written: the
// softmax over the keys of this block visible to each query. A query that sees no key of the
// block gets out 0 and lse -inf (merging it changes nothing). scale multiplies q.k.
BlockAttentionPath attention_block_forward(const Context& ctx, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const Tensor& cu_seqlens,
                                           const std::vector<std::int32_t>& cu_host,
                                           std::int64_t q_begin, std::int64_t k_begin, float scale,
                                           Tensor out, Tensor lse);

// Merges a block's (block_out, block_lse) into the accumulated (out, lse), in place:
// lse' = log(exp(lse) + exp(block_lse)), out' = out exp(lse - lse') + block_out exp(block_lse -
// lse'). out, block_out: [T, H, D]; lse, block_lse: [H, T] f32. Start from out 0 and lse -inf (or
// from the first block's result); the order of merges changes only rounding.
void attention_merge(const Context& ctx, Tensor out, Tensor lse, const Tensor& block_out,
                     const Tensor& block_lse);

// out, lse: the final output [Tq, Hq, D] and lse [Hq, Tq] of these queries (merged over every
// key block); dout: [Tq, Hq, D]. Adds this key block's share of the gradients:
// dq [Tq, Hq, D] +=, dk, dv [Tk, Hkv, D] += (query heads sharing a kv head summed into it).
// Summed over all key blocks, dq equals ops::attention_backward's and each block's dk, dv are
// its rows of it.
BlockAttentionPath attention_block_backward(const Context& ctx, const Tensor& q, const Tensor& k,
                                            const Tensor& v, const Tensor& cu_seqlens,
                                            const std::vector<std::int32_t>& cu_host,
                                            std::int64_t q_begin, std::int64_t k_begin, float scale,
                                            const Tensor& out, const Tensor& lse,
                                            const Tensor& dout, Tensor dq, Tensor dk, Tensor dv);

}  // namespace ulysses::ops
