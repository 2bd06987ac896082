// The attention strategies (implementations of model::AttentionStrategy).
#pragma once

#include <cstdint>
#include <memory>

#include "ulysses/comm/communicator.h"
#include "ulysses/model/attention_strategy.h"

namespace ulysses::parallel {

using model::AttentionSaved;
using model::AttentionStrategy;

// Attention on one rank holding the whole sequence.
std::unique_ptr<AttentionStrategy> make_local_attention();

// Ulysses sequence parallelism over `sp_group` (P ranks, each holding S/P tokens of the same
// sequence): an all-to-all turns q/k/v [S/P, H, D] into [S, H/P, D], attention runs over the
// whole sequence for this rank's heads, and a second all-to-all brings the output back to
// [S/P, H, D]. kv heads are split when num_kv_heads % P == 0 and replicated (each rank gets
// the one kv head its query heads use; gradients of the replicas are summed) when
// P % num_kv_heads == 0. The group must outlive the strategy. docs/parallelism.md has the math.
// `pipeline` (--sp-pipeline) processes this rank's heads in two parts so one part's exchanges
// run beside the other's attention (same results; opt-in, see docs/parallelism.md).
std::unique_ptr<AttentionStrategy> make_ulysses_attention(comm::Communicator& sp_group,
                                                          std::int64_t num_heads,
                                                          std::int64_t num_kv_heads,
                                                          bool pipeline = false);

// Ring attention (ulysses_group of one rank) or its hybrid with Ulysses, over an SP group laid
// out as a grid (parallel::Mesh, ring_size > 1): the U ranks of ulysses_group exchange tokens
// for heads as Ulysses does (num_heads % U == 0; kv heads split or replicated as above), and
// the R ranks of ring_group pass K/V blocks around a ring (point-to-point, sent while the
// current block computes), merging blocks by their log-sum-exp; backward passes the dK/dV
// accumulators around with the blocks. Shards must be zigzag slices (data::zigzag_ranges:
// chunks i and 2R - 1 - i of 2R equal chunks), which balances causal work over the ring.
// Both groups must outlive the strategy. Kernels: ops/block_attention.h (CPU fp32 reference;
// a plain, untuned CUDA kernel). docs/parallelism.md has the math and the costs.
std::unique_ptr<AttentionStrategy> make_ring_attention(comm::Communicator& ulysses_group,
                                                       comm::Communicator& ring_group,
                                                       std::int64_t num_heads,
                                                       std::int64_t num_kv_heads);

}  // namespace ulysses::parallel
