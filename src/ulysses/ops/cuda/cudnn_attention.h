// Causal varlen GQA attention on cuDNN's fused flash-attention engine, built through cuDNN's
// backend graph API (cudnn_graph.h; no frontend headers). Internal to ops/attention.cc.
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
// Graphs are built once per (direction, T, heads, head_dim, document-count bucket, longest-
// document bucket) and cached in the context's CudaResources; the buckets are powers of two, so
// packing that varies from step to step reuses a handful of plans.
//
// Both functions return false, without touching the outputs, when cuDNN cannot run the call
// (library missing, too old, the shape refused by every engine); the reason is logged once per
// shape and the caller falls back to its own kernel. Errors after a plan was chosen throw.
// Backward accumulates (dq += ...), like every backward op here; it is not bitwise
// deterministic (cuDNN sums dQ with atomics).
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
                              Tensor dq, Tensor dk, Tensor dv);

// Plans of one CUDA context (CudaResources::attention_plans; opaque elsewhere).
struct CudnnAttentionCache;

}  // namespace ulysses::ops::cuda
