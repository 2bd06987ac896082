// ZeroState's host offload paths (zero.h, "Offload"): the gradient shards sent to pinned host
// memory during backward (--offload-gradients) and the pipelined host AdamW of finish_step
// (--offload-optimizer on a device). The rest of the state: zero.cc.
#include <algorithm>
#include <vector>

#include "ulysses/core/copy_stream.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/parallel/zero.h"
#include "ulysses/parallel/zero_group.h"

namespace ulysses::parallel {

void ZeroState::send_grads_to_host(std::size_t index, Tensor reduced) {
  Group& g = groups_[index];
  release_sent_grads();
  // The contribution is added to what the step holds so far, as the resident path adds it
  // into its shard: zeros for the step's first (0 + x, which also turns -0 into +0), else the
  // host shard brought back (after its earlier copy there: same stream).
  Tensor sum;
  if (grad_contributions_[index]++ == 0) {
    sum = Tensor::zeros({g.shard}, DType::f32, ctx_.device);
  } else {
    sum = Tensor::empty({g.shard}, DType::f32, ctx_.device);
    copy_->wait_for_compute();  // the compute stream's queued work may still use that memory
    copy_->copy(sum, g.grads);
    copy_->compute_waits(copy_->record());
  }
  ops::add_inplace(ctx_, sum, reduced);
  reduced = Tensor();
  Tensor shard = std::move(sum);  // [s] f32 on the device: the step's gradient so far
  // The norm's term, taken on the device as finish_step takes it of a resident shard (no wait:
  // finish_step reads every group's at once).
  ops::sum_of_squares_into(ctx_, shard, grad_squares_, static_cast<std::int64_t>(index));
  copy_->wait_for_compute();
  copy_->copy(g.grads, shard);
  sent_grads_mark_ = copy_->record();
  sent_grads_ = std::move(shard);
  current_.grads += static_cast<std::int64_t>(sent_grads_.nbytes());
  note_transient();
}

void ZeroState::release_sent_grads() {
  if (!sent_grads_.defined()) return;
  // The caching allocator hands memory out in compute-stream order: once the compute stream
  // has waited for the copy, the buffer may go back (no host synchronization).
  copy_->compute_waits(sent_grads_mark_);
  current_.grads -= static_cast<std::int64_t>(sent_grads_.nbytes());
  sent_grads_ = Tensor();
}

void ZeroState::update_offloaded(std::int64_t step, float lr, float grad_scale) {
  const Context host;  // the CPU kernel, on every OpenMP thread
  // Pieces of at most offload_stage_elements of one group's shard, in group order.
  struct Piece {
    std::size_t group;
    std::int64_t begin, end;  // [begin, end) of the shard
  };
  std::vector<Piece> pieces;
  for (std::size_t i = 0; i < groups_.size(); ++i)
    for (std::int64_t b = 0; b < groups_[i].shard; b += zero_.offload_stage_elements)
      pieces.push_back({i, b, std::min(groups_[i].shard, b + zero_.offload_stage_elements)});
  // The gradients are final and the backward no longer reads the parameters.
  copy_->wait_for_compute();
  const auto fetch_grads = [&](std::size_t k) {
    if (host_grads()) return;  // the gradient shards are in host memory already
    const Piece& p = pieces[k];
    copy_->copy(grad_stage_[k % 2].rows(0, p.end - p.begin),
                groups_[p.group].grad_shard().rows(p.begin, p.end));
    grad_ready_[k % 2] = copy_->record();
  };
  if (!pieces.empty()) fetch_grads(0);
  for (std::size_t k = 0; k < pieces.size(); ++k) {
    const Piece& p = pieces[k];
    Group& g = groups_[p.group];
    const std::int64_t n = p.end - p.begin;
    // Piece k + 1's gradients come while piece k updates (its slot was piece k - 1's, done).
    if (k + 1 < pieces.size()) fetch_grads(k + 1);
    if (!host_grads()) CopyStream::host_waits(grad_ready_[k % 2]);
    const Tensor grad = host_grads() ? g.grads.rows(p.begin, p.end)  // [n] f32, pinned
                                     : grad_stage_[k % 2].rows(0, n);
    // The rounded piece: straight into the pinned shard (offload_params), else into a staging
    // slot whose previous copy (piece k - 2's) is done, its padding zeroed.
    Tensor rounded;
    if (zero_.offload_params) {
      rounded = g.params.rows(p.begin, p.end);
    } else {
      CopyStream::host_waits(params_sent_[k % 2]);
      rounded = param_stage_[k % 2].rows(0, n);
      const std::int64_t valid = std::clamp<std::int64_t>(g.numel - g.lo - p.begin, 0, n);
      if (valid < n) rounded.rows(valid, n).zero_();
    }
    adamw_ranges(host, p.group, step, lr, grad_scale, g.master, grad, rounded, p.begin, p.end);
    if (zero_.offload_params) continue;  // the next acquire copies the shard to the device
    // The piece goes back while the next one updates; after a group's last piece the compute
    // stream waits for the copies (a mark covers every earlier copy of the stream) before the
    // all-gather (stage 1-2) or the next forward reads the shard.
    Tensor own = g.param_shard();  // [s] on the device
    copy_->copy(own.rows(p.begin, p.end), rounded);
    params_sent_[k % 2] = copy_->record();
    if (p.end == g.shard) {
      copy_->compute_waits(params_sent_[k % 2]);
      publish(g, own);
    }
  }
}

}  // namespace ulysses::parallel
