// CPU fp32 kernels of the token embedding (no argument validation: see ops/embedding.h).
#pragma once

#include <cstdint>

namespace ulysses::ops::cpu {

// ids: [T], table: [V, C] -> out: [T, C] written. Every id must be in [0, V).
void embedding_forward(const std::int32_t* ids, const float* table, float* out, std::int64_t T,
                       std::int64_t C);

// dtable: [V, C] += dout: [T, C] scattered by ids: [T]. Tokens are added in order 0..T-1 for
// every column, so repeated ids accumulate deterministically.
void embedding_backward(const std::int32_t* ids, const float* dout, float* dtable, std::int64_t T,
                        std::int64_t C);

}  // namespace ulysses::ops::cpu
