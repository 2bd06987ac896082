// The two Ulysses exchanges, as free functions (used by the Ulysses attention strategy and
// tested directly).
//
// Heads are assigned to the P ranks of the group in chunks: rank j owns `chunk` heads starting at
// first_head[j] (query heads: j * H/P; kv heads: j * Hkv/P when split, or the single head
// j * Hkv / P when replicated).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/context.h"

namespace ulysses::parallel {

// Sequence-sharded x: [T, H, D] (this rank's T = S/P tokens, all heads) -> head-sharded
// [S, chunk, D] (every token, this rank's heads), tokens in sequence order.
Tensor sequence_to_heads(const Context& ctx, comm::Communicator& group, const Tensor& x,
                         const std::vector<std::int64_t>& first_head, std::int64_t chunk);

// Head-sharded x_heads: [S, chunk, D] -> this rank's tokens of every head, written into
// x: [T, H, D] (accumulate = false: chunks must cover every head once) or added to it
// (accumulate = true: replicated chunks are summed in rank order).
void heads_to_sequence(const Context& ctx, comm::Communicator& group, const Tensor& x_heads,
                       const std::vector<std::int64_t>& first_head, std::int64_t chunk, Tensor x,
                       bool accumulate);

// The same exchanges in two halves, so communication can run while the caller computes (on
// GPUs the all-to-all runs on the communication stream). Start functions queue the layout
// change and the all-to-all and return at once; the result is usable after finish. The
// blocking functions above are exactly start + finish (one code path).
struct PendingExchange {
  std::unique_ptr<comm::Work> work;
  Tensor recv;  // sequence_to_heads: the [S, chunk, D] result; heads_to_sequence: the chunks
};
// x: [T, H, D] -> out: [S, chunk, D] (written after finish_sequence_to_heads).
PendingExchange start_sequence_to_heads(const Context& ctx, comm::Communicator& group,
                                        const Tensor& x,
                                        const std::vector<std::int64_t>& first_head,
                                        std::int64_t chunk, Tensor out);
void finish_sequence_to_heads(PendingExchange& pending);
// x_heads: [S, chunk, D] -> the receive buffer; finish scatters it into x (as heads_to_sequence).
PendingExchange start_heads_to_sequence(const Context& ctx, comm::Communicator& group,
                                        const Tensor& x_heads, std::int64_t tokens);
void finish_heads_to_sequence(const Context& ctx, PendingExchange& pending,
                              const std::vector<std::int64_t>& first_head, std::int64_t chunk,
                              Tensor x, bool accumulate);

// Head assignment: the first head of each rank's chunk, and the chunk size.
struct HeadChunks {
  std::vector<std::int64_t> first_head;
  std::int64_t chunk = 0;
};
HeadChunks query_head_chunks(std::int64_t num_heads, std::int64_t sp);
HeadChunks kv_head_chunks(std::int64_t num_kv_heads, std::int64_t sp);

}  // namespace ulysses::parallel
