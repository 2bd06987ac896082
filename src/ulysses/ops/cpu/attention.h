// CPU fp32 kernels of the causal variable-length grouped-query attention (see ops/attention.h).
// No argument validation here: ops::attention_forward/backward validate, then dispatch.
#pragma once

#include <cstdint>

namespace ulysses::ops::cpu {

// Sizes shared by the forward and backward kernels.
struct AttentionShape {
  std::int64_t tokens;         // T
  std::int64_t query_heads;    // Hq
  std::int64_t kv_heads;       // Hkv (divides Hq)
  std::int64_t head_dim;       // D
  std::int64_t num_documents;  // n (cu_seqlens has n + 1 entries)
  std::int64_t block;          // query/key block size (> 0)
};

// q: [T, Hq, D]; k, v: [T, Hkv, D]; cu_seqlens: [n + 1]
// -> out: [T, Hq, D] written; lse: [Hq, T] written.
void attention_forward(const AttentionShape& shape, const float* q, const float* k, const float* v,
                       const std::int32_t* cu_seqlens, float scale, float* out, float* lse);

// q, out, dout, dq: [T, Hq, D]; k, v, dk, dv: [T, Hkv, D]; lse: [Hq, T]
// dq, dk, dv are accumulated (+=).
void attention_backward(const AttentionShape& shape, const float* q, const float* k, const float* v,
                        const std::int32_t* cu_seqlens, float scale, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv);

}  // namespace ulysses::ops::cpu
