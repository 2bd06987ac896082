// Head-chunk layout changes used around the Ulysses all-to-alls.
//
// A chunk is a contiguous range of `heads_per_chunk` heads starting at first_head[j]; chunk j
// is what SP rank j receives. Gathering chunks turns [T, H, D] (all heads of local tokens) into
// [P, T, heads_per_chunk, D] (chunk-major, ready for an equal-split all-to-all); scattering does
// the inverse for the tensor that comes back. Chunks may overlap (replicated kv heads): the
// accumulating scatter then sums the replicas' contributions in chunk order.
//
// CPU: f32 (accumulate) or any dtype (copies). CUDA (ops/cuda/head_chunks.h): copies of any
// dtype; accumulate in f32 or bf16 (bf16: x plus the replicas summed in f32 in chunk order,
// rounded once). Deterministic on both, no host synchronization.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// x: [T, H, D] -> out: [P, T, heads_per_chunk, D] written, P = first_head.size().
// Any dtype (a copy).
void gather_head_chunks(const Context& ctx, const Tensor& x,
                        const std::vector<std::int64_t>& first_head,
                        std::int64_t heads_per_chunk, Tensor out);

// chunks: [P, T, heads_per_chunk, D] -> x: [T, H, D]. With accumulate, x[t, first_head[j] + h]
// += chunks[j, t, h] for j = 0..P-1 in order (f32; bf16 too on CUDA); without, x[t, first_head[j] + h] =
// chunks[j, t, h] (any dtype; chunks must then not overlap; heads outside every chunk keep
// their values, so a caller may fill x in several calls).
void scatter_head_chunks(const Context& ctx, const Tensor& chunks,
                         const std::vector<std::int64_t>& first_head,
                         std::int64_t heads_per_chunk, Tensor x, bool accumulate);

}  // namespace ulysses::ops
