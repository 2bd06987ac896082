// CUDA kernels of ops/head_chunks.h (validated by ops/head_chunks.cc).
// Copies: any dtype (moved as raw units of 2 to 16 bytes). Accumulating scatter: f32 or bf16;
// each element of x is read once, the replicas are added in chunk order in f32 and the sum is
// rounded once (deterministic, no atomics). At most kMaxHeadChunks chunks.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

constexpr std::int64_t kMaxHeadChunks = 256;

void gather_head_chunks(const Context& ctx, const Tensor& x,
                        const std::vector<std::int64_t>& first_head, std::int64_t heads_per_chunk,
                        Tensor out);
void scatter_head_chunks(const Context& ctx, const Tensor& chunks,
                         const std::vector<std::int64_t>& first_head, std::int64_t heads_per_chunk,
                         Tensor x, bool accumulate);

}  // namespace ulysses::ops::cuda
