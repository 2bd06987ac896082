// ZeroState's per-group record (private to parallel/zero.cc and parallel/zero_offload.cc).
#pragma once

#include <cstdint>
#include <memory>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/tensor.h"
#include "ulysses/parallel/zero.h"

namespace ulysses::parallel {

// One parameter group's state on this rank. s = shard, padded = Z * s; this rank owns
// elements [lo, lo + s) of the padded flat buffer. "device" is the context's device; "host"
// buffers are the offloaded ones (on the CPU backend both are host memory).
struct ZeroState::Group {
  std::int64_t numel = 0, shard = 0, padded = 0, lo = 0;
  // Compute dtype. Stage 0-2: [padded] full on the device; stage 3: [s] this rank's shard (in
  // host memory with offload_params).
  Tensor params;
  Tensor master;      // mixed precision only: [s] f32 master shard (host with offload_optimizer)
  Tensor grads;       // f32 on the device (pinned host with offload_gradients). Stage 0-1:
                      // [padded] full; stage 2-3: [s] shard
  Tensor exp_avg;     // [s] f32 (host with offload_optimizer)
  Tensor exp_avg_sq;  // [s] f32 (host with offload_optimizer)
  Tensor gathered;    // stage 3: [padded] compute dtype on the device while acquired/prefetched
  std::unique_ptr<comm::Work> gather_work;  // stage 3: the all-gather into `gathered`, unwaited
  int acquire_count = 0;
  Tensor grad_full;  // stage 2-3: [padded] f32 on the device, gradients of the running backward

  bool params_sharded = false, grads_sharded = false;  // stage >= 3, stage >= 2

  // This rank's shard of the parameters and gradients ([s] views).
  Tensor param_shard() const { return params_sharded ? params : params.rows(lo, lo + shard); }
  Tensor grad_shard() const { return grads_sharded ? grads : grads.rows(lo, lo + shard); }
  // What AdamW updates ([s] f32): the master shard in mixed precision, else the parameters.
  Tensor master_shard() const { return master.defined() ? master : param_shard(); }
};

}  // namespace ulysses::parallel
