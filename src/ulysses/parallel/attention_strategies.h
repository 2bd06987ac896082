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

}  // namespace ulysses::parallel
