// Argument checks shared by the communicator backends (internal to src/ulysses/comm/).
//
// Each check throws ulysses::Error naming the collective and the argument at fault. They only
// look at local arguments: a rank whose arguments disagree with the other ranks' (for example
// different shapes) must be caught by the caller or ends in a hang, as with MPI itself.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/tensor.h"

namespace ulysses::comm::detail {

// Element offsets of consecutive chunks of the given sizes: {0, c0, c0 + c1, ...} (size n + 1).
std::vector<std::int64_t> prefix_offsets(const std::vector<std::int64_t>& counts);

// send and recv: same dtype, no overlapping bytes, both defined.
void check_pair(const char* collective, const Tensor& send, const Tensor& recv);

// all_to_all: equal numel, divisible by group_size.
void check_all_to_all(const Tensor& send, const Tensor& recv, int group_size);
// all_gather: recv numel == group_size * send numel.
void check_all_gather(const Tensor& send, const Tensor& recv, int group_size);
// reduce_scatter: send numel == group_size * recv numel.
void check_reduce_scatter(const Tensor& send, const Tensor& recv, int group_size);
// all_reduce, broadcast, send, recv: a defined tensor.
void check_defined(const char* collective, const Tensor& data, const char* name);
// broadcast root / send-recv peer inside [0, group_size).
void check_rank_in_group(const char* collective, const char* name, int value, int group_size);

}  // namespace ulysses::comm::detail
