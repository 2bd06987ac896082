// Causal varlen GQA attention on cuDNN's fused flash-attention engine, built through cuDNN's
// backend graph API (cudnn_graph.h; no frontend headers). Internal to ops/attention.cc and, via
// the ragged SDPA level below, to the block attention of ring attention (cudnn_block_attention.h).
//
// The library is loaded at run time (dlopen of libcudnn.so.9, or the file named by
// ULYSSES_CUDNN_LIBRARY), so builds and CPU-only machines never need it. The graph is the
// operation pattern the engine fuses: Q.K^T -> scale -> padding mask -> causal mask -> softmax
// (max, exp, sum, log: the statistics) -> P.V, and for backward the matching dP/dS chain.
// Packed documents are cuDNN's ragged (THD) layout: document i is batch entry i, its tokens start
// at element cu_seqlens[i] * heads * head_dim, its length is a per-batch sequence length, so no
// token attends across a document boundary. The statistics tensor is our lse [Hq, T]
// (ragged offset cu_seqlens[i], head stride T), so either backward can follow either forward.
//
// Graphs are built once per (direction, causal, T, heads, head_dim, document-count bucket,
// longest-document buckets) and cached in the context's CudaResources; the buckets are powers of
// two, so packing that varies from step to step reuses a handful of plans. A sequence that is
// one document of every token takes the dense graph instead (no offsets, lengths or padding
// mask: one entry of T tokens), which cuDNN runs a few percent faster; its values agree with the
// ragged graph's to bf16 rounding, not bitwise.
//
// Both functions return false, without touching the outputs, when cuDNN cannot run the call
// (library missing, too old, the shape refused by every engine); the reason is logged once per
// shape and the caller falls back to its own kernel. Errors after a plan was chosen throw.
// Backward accumulates (dq += ...), like every backward op here, or with overwrite writes
// straight into dq, dk, dv; it is not bitwise deterministic (cuDNN sums dQ with atomics).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

// Version of the loaded cuDNN (e.g. 91400), or 0 with *reason set when it cannot be loaded.
int cudnn_version(std::string* reason = nullptr);

// q: [T, Hq, D], k, v: [T, Hkv, D] bf16 on the context's device; cu_seqlens: [n + 1] i32 on the
// device with cu_host its host copy; out: [T, Hq, D] bf16 and lse: [Hq, T] f32 written.
bool cudnn_attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& cu_seqlens, const std::vector<std::int32_t>& cu_host,
                             float scale, Tensor out, Tensor lse);

bool cudnn_attention_backward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& cu_seqlens, const std::vector<std::int32_t>& cu_host,
                              float scale, const Tensor& out, const Tensor& lse, const Tensor& dout,
                              Tensor dq, Tensor dk, Tensor dv, bool overwrite = false);

// Plans of one CUDA context (CudaResources::attention_plans; opaque elsewhere).
struct CudnnAttentionCache;

// The ragged SDPA both wrappers run: `batch` entries; entry i has seq_q[i] queries starting at
// element q_offset[i] of q, out, dout, dq ([q_tokens, Hq, D] token-major), seq_kv[i] keys at
// kv_offset[i] of k, v, dk, dv ([kv_tokens, Hkv, D]) and its statistics at stats_offset[i] of
// lse ([Hq, q_tokens], head stride q_tokens). Scores are masked to the entry's rows and columns
// and, when causal, to key <= query counted from the entry's start (top-left). Rows of no entry
// are neither read nor written. All bf16 but lse (f32), 16-byte aligned.
struct SdpaShape {
  bool causal = true;
  std::int64_t q_tokens = 0, kv_tokens = 0, query_heads = 0, kv_heads = 0, head_dim = 0;
  // Plan buckets: batch >= the entries used (unused ones have length 0), max_q >= every seq_q,
  // max_kv >= every seq_kv.
  std::int64_t batch = 0, max_q = 0, max_kv = 0;
};
// The entries on the device, i32: seq_q, seq_kv [batch]; q_offset, kv_offset, stats_offset
// [batch + 1] (element offsets, non-decreasing; the last one the end of the tensor).
struct SdpaEntries {
  const std::int32_t* seq_q = nullptr;
  const std::int32_t* seq_kv = nullptr;
  const std::int32_t* q_offset = nullptr;
  const std::int32_t* kv_offset = nullptr;
  const std::int32_t* stats_offset = nullptr;
};
struct SdpaPlan;  // a built plan (opaque)

// The plan for this shape, built on first use and cached, with the handle bound to the
// context's stream; null when cuDNN cannot run it (the reason logged once per shape).
const SdpaPlan* cudnn_sdpa_plan(const Context& ctx, bool backward, const SdpaShape& shape);
// out [q_tokens, Hq, D] and lse written for the entries' rows.
void cudnn_sdpa_forward(const Context& ctx, const SdpaPlan& plan, const SdpaEntries& entries,
                        const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor out,
                        Tensor lse);
// dq, dk, dv (bf16) *written* (not accumulated) for the entries' rows, from the final out and
// lse (the statistics of the softmax the gradient is taken through).
void cudnn_sdpa_backward(const Context& ctx, const SdpaPlan& plan, const SdpaEntries& entries,
                         const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                         const Tensor& out, const Tensor& lse, const Tensor& dout, Tensor dq,
                         Tensor dk, Tensor dv);

// A survey of cuDNN's engines for one shape (cuda_ops_bench --attention-engines): every plan
// the graph finalizes with (GraphBuilder::plan_choices; the first is the one cudnn_sdpa_plan
// uses), run with the two functions above. ragged = false builds the dense graph of one entry
// (batch 1, max_q = q_tokens, max_kv = kv_tokens; no lengths, offsets or padding mask), for
// comparison. Empty when cuDNN cannot run the shape. Not cached.
struct SdpaChoice {
  std::string name;
  std::shared_ptr<SdpaPlan> plan;
};
// One causal entry of T tokens spanning the tensors (a single document): its shape for these
// heads and its arrays on the context's device (`arrays` owns what `entries` points to).
struct SdpaOneEntry {
  SdpaShape shape;
  Tensor arrays;
  SdpaEntries entries;
};
SdpaOneEntry cudnn_sdpa_one_entry(const Context& ctx, std::int64_t T, std::int64_t query_heads,
                                  std::int64_t kv_heads, std::int64_t head_dim);
std::vector<SdpaChoice> cudnn_sdpa_choices(const Context& ctx, bool backward,
                                           const SdpaShape& shape, bool ragged, int max_values);

}  // namespace ulysses::ops::cuda
