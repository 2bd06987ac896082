// ZeRO (DeepSpeed semantics): optimizer state, gradients and parameters sharded over the ZeRO
// group, with dp_replicate as an outer replica dimension.
//
// ZeRO group = the Z = dp_shard x sp ranks of one replica (Mesh::zero_group()); replicate group
// = the dp_replicate ranks that hold the same shard (Mesh::replicate_group()). Every parameter
// group's flat buffer (embed, layers.i, final) is padded with zeros to a multiple of Z and cut
// into Z equal shards: ZeRO rank z owns elements [z * s, (z + 1) * s), s = ceil(numel / Z).
//
//   stage 0: everything replicated (the plain data-parallel step; also the one-rank step: every
//            group of a world of one is a group of size one, so every stage and offload
//            works there too).
//   stage 1: AdamW moments sharded; each rank updates its shard of the (full) parameters and
//            the updated shards are all-gathered into the full buffers.
//   stage 2: + gradients sharded: the decoder accumulates a group's gradients into a temporary
//            full buffer, which is reduce-scattered over the ZeRO group (and added into this
//            rank's persistent gradient shard) as soon as the group's backward is done.
//   stage 3: + parameters sharded: a group's full parameters exist only between acquire and
//            release (all-gathered over the ZeRO group on the first acquire).
//
// Gradient reduction (sums in rank order, so every rank of a replica gets bit-identical
// results): stage 0-1 all-reduce the full gradients over the world; stage 2-3 reduce-scatter
// over the ZeRO group during backward, then all-reduce the shards over the replicate group.
// The global grad norm adds the ranks' partial sums of squares (double) in ZeRO rank order.
//
// Precision and devices. The ZeroState lives on its Context's device and uses its compute dtype:
//   - fp32 (the CPU reference): the parameters are the master weights; the shard AdamW updates
//     is this rank's slice of the parameters.
//   - mixed (compute dtype bf16, the CUDA backend): the decoder reads bf16 parameters (full
//     buffers at stage 0-2, gathered per group at stage 3); the fp32 master shard, the AdamW
//     moments and the gradients (fp32) are separate. finish_step runs AdamW on the master shard
//     and writes the rounded bf16 shard in the same pass (ops::adamw_multi_step), then the
//     bf16 shards are all-gathered into the full buffers (stage 1-2) or are the stage-3 shard.
// (zero_offload.cc holds the offload paths, zero_group.h the per-group record.)
// Every buffer is allocated once, by the constructor (persistent), except the transient full
// buffers of stage 2-3 and the small per-step copies, which come from the device's caching
// allocator (Tensor::empty), so no cudaMalloc runs inside a step once the cache is warm.
//
// Per-rank memory: the table in parallel/zero_config.h (zero_memory_formula).
//
// Overlap (stage 2-3; ZeroConfig::overlap = false turns it off, same results).
// Collectives are started (Communicator::*_start) and waited for later, so on GPUs they run on
// the communication stream while the compute stream works on the neighbouring group:
//   - prefetch (stage 3): acquire(i) after acquire(i - 1) also starts the all-gather of group
//     i + 1 (the forward's next group), acquire(i) after acquire(i + 1) that of group i - 1 (the
//     backward's); after construction, begin_step and finish_step the previous acquire counts
//     as group -1 (a step starts with the forward at group 0). Only a group neither acquired
//     nor gathered is prefetched, and at most one at a time (starting another drops the older
//     one). Acquiring the prefetched group waits for its all-gather; one never acquired is
//     dropped by begin_step / finish_step / set_parameters / load_state_tensors (the decoder's
//     backward never acquires the embedding, so the last micro-step's prefetch of group 0 is
//     dropped: one wasted all-gather per step, at most one group of memory).
//   - asynchronous reduce-scatter (stage 2-3): grads_done(i) starts the reduce-scatter of group
//     i's full gradient buffer and returns; it is waited for and added into the gradient shard
//     by the next grads_done (before it starts its own) or by finish_step / begin_step, so the
//     additions happen in grads_done order, as without overlap (bit-identical results).
// On the CPU (MPI) the starts complete before returning: only the order of the calls changes.
//
// Offload. On the CPU backend every buffer already lives in host memory, so offload_optimizer /
// offload_params change nothing but the accounting (Memory::offloaded). On CUDA the offloaded
// buffers are host memory allocated once by the constructor; what the device copies from or
// into during a step is pinned (Tensor::zeros_pinned; Memory::pinned): the staging slots below
// and the offloaded bf16 parameter shards. The master shard and moments are never copied to the
// device in a step (AdamW runs where they live), so they stay pageable (first touched in
// parallel): pinning 12 bytes per parameter would only lengthen setup. Every copy between
// pinned memory and the device is asynchronous, on the state's copy stream
// (core/copy_stream.h), ordered with the compute stream by events:
//   - offload_optimizer keeps the AdamW moments and the fp32 master shard in host memory
//     (Memory::optimizer + master). finish_step, after the norm and the clip factor,
//     pipelines the shards, cut into pieces of at most kOffloadStageElements, through two
//     pinned staging slots (Memory::host_staging): the copy of piece k + 1's gradients to the
//     host overlaps the host AdamW of piece k (ops::adamw_multi_step on a CPU context: every
//     OpenMP thread, vectorized, the clip factor applied and the rounded bf16 values written in
//     the same pass), and the copy of piece k's bf16 values back to the device overlaps piece
//     k + 1's update; after a group's
//     last piece the compute stream waits for those copies before the all-gather (stage 1-2)
//     or the next forward (stage 3). With offload_params the bf16 values are written straight
//     into the pinned host shard.
//   - offload_params (stage 3) keeps the bf16 parameter shards in host memory (Memory::params):
//     acquire (and the prefetch, see "Overlap") copies the shard to the device on the copy
//     stream. One rank: that copy is the gather, and the compute stream waits for it only at
//     the acquire, so a prefetched group's copy runs under the previous group's compute. Z > 1:
//     the compute stream waits for the copy before the all-gather starts.
//   - offload_params without offload_optimizer: AdamW runs on the device and the bf16 shard is
//     copied into its pinned host buffer (a synchronous copy at the DMA rate).
//   - offload_gradients (stage 2-3 with offload_optimizer) keeps the fp32 gradient shards in
//     pinned host memory (Memory::grads). When a group's reduce-scatter is added (the next
//     grads_done, or finish_step) the reduced shard is finished on the device with the resident
//     path's addition: the step's first contribution is added to zeros, a later one (gradient
//     accumulation) to the host shard brought back to the device. Its sum of squares is taken
//     there into its slot (the norm's per-group term: the same op on the same values as
//     without offload, read with the others by finish_step) and it is copied to the host
//     shard on the copy stream, overlapping the backward of the next groups; the device
//     buffer goes back to the caching
//     allocator once the compute stream has waited for that copy (at the next group's
//     completion). The host AdamW reads them in place (clipping each value as it reads it), so
//     no gradient staging slot is needed. Bit-identical to the resident gradients; the device
//     keeps one reduced shard in flight instead of all of them.
// Otherwise the gradients (fp32) stay on the device. The host waits for copies only where it
// reads or rewrites host memory: a gradient slot before its AdamW, a staging slot before it is
// refilled, all copies at finish_step's start and before set_parameters / load_state_tensors.
// A CUDA state in f32 (tests only) keeps the synchronous per-group copies.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/copy_stream.h"
#include "ulysses/core/format.h"
#include "ulysses/model/param_store.h"
#include "ulysses/model/params.h"
#include "ulysses/ops/adamw.h"
#include "ulysses/parallel/mesh.h"
#include "ulysses/parallel/zero_config.h"

namespace ulysses::parallel {

// Collectives: acquire/release (stage 3), grads_done (stage 2-3), finish_step,
// gather_parameters (stage 3; mixed precision: stage 1-3) and load_state_tensors (stage 1-3) are
// collective over the ZeRO group (the world for finish_step); every rank calls them in the same
// order, as the decoder does. Collectives on device tensors go through the Communicator like any
// other (NCCL on GPUs); the ZeroState never talks to a backend directly. It relies on a
// collective on device tensors being ordered after the compute stream's earlier work and before
// its later work (so a transient buffer may go back to the caching allocator as soon as the call
// returns) — for a started one (*_start, see "Overlap"), before the compute stream's work after
// the Work's wait(), which also holds its buffers until then — and on collectives of host
// tensors (the grad norm's partial sums) working on every backend. Prefetches are collective
// too: every rank of the ZeRO group makes the same acquire calls, hence the same prefetches.
class ZeroState final : public model::ParamStore {
 public:
  using Memory = ZeroMemory;

  // Collective-free. Parameters start at zero: call set_parameters before training. The state
  // lives on ctx.device with ctx.compute_dtype parameters (see "Precision and devices"); the
  // context must outlive the ZeroState's use (it is copied; its resources are shared).
  ZeroState(const Context& ctx, const model::ModelConfig& config, Mesh& mesh,
            const ZeroConfig& zero, const ops::AdamWConfig& adamw);
  // The CPU fp32 reference (a CPU context).
  ZeroState(const model::ModelConfig& config, Mesh& mesh, const ZeroConfig& zero,
            const ops::AdamWConfig& adamw);
  ~ZeroState() override;
  ZeroState(const ZeroState&) = delete;
  ZeroState& operator=(const ZeroState&) = delete;

  // ParamStore. acquire ([numel], compute dtype, on the device): stage 0-2 the resident full
  // buffer; stage 3 all-gathers the group's shards (copied to the device first when offloaded)
  // into a temporary full buffer on the first (outer) acquire, or takes the prefetched one
  // (see "Overlap"), and frees it on the last release; it may start the next group's gather.
  // grads ([numel] f32 on the device): stage 0-1 the persistent full buffer; stage 2-3 a
  // temporary full buffer, zeroed when created, reduce-scattered into this rank's gradient
  // shard by grads_done (which gives it up: the buffer must not be written after grads_done;
  // with overlap the reduction completes at the next grads_done or at finish_step; grads_done
  // is a no-op at stage 0-1). The gradient shard is complete only after finish_step's start.
  const model::ModelConfig& config() const override { return config_; }
  const model::ParamLayout& layout() const override { return layout_; }
  Tensor acquire(std::size_t group) override;
  void release(std::size_t group) override;
  Tensor grads(std::size_t group) override;
  void grads_done(std::size_t group) override;

  // Same values on every rank (initialized or loaded weights; f32, any device). Not
  // collective. Mixed precision: the master shard takes the f32 values, the compute parameters
  // their bf16 rounding. (Tests and small models: the trainer sets its parameters from a
  // GroupRangeSource, without a full copy.)
  void set_parameters(const model::ParamBuffers& full);
  // Writes elements [lo, lo + out.numel()) of parameter group `group`'s flat f32 buffer into
  // `out`: a 1-D f32 tensor, or the compute dtype (the f32 values rounded to nearest even), on
  // the state's device or in host memory; elements past the group's numel are zero. Every rank
  // must get the same values for the same element (init: model::init_group_range; HF weights:
  // io::HfWeightReader::read_group_range).
  using GroupRangeSource = std::function<void(std::size_t group, std::int64_t lo, Tensor out)>;
  // Shard-only setup: asks `source` for exactly what this rank keeps, written straight into
  // its buffers (on the device, or in host memory when offloaded): the master shard and, at
  // stage 0-2, the full compute-dtype buffer (which every rank holds), or at stage 3 only the
  // compute-dtype shard (mixed precision: two requests per group). No rank ever holds the
  // whole f32 model. Not collective. The values equal set_parameters(full) of the same weights.
  void set_parameters(const GroupRangeSource& source);
  // Zeroes the gradient accumulators (and the transient peaks). Call before the first backward
  // of an optimizer step.
  void begin_step();
  // After every micro-step's backward: reduces the gradients, computes the global grad norm
  // (identical on all ranks), clips to max_grad_norm (> 0; torch's rule: the factor is applied
  // inside AdamW, so the gradient buffers keep the unclipped sums), runs AdamW (1-based
  // step, learning rate lr; weight decay only where ParamSpec::weight_decay) on this rank's
  // shards and refreshes the parameters (stage 1-2: all-gather into the full buffers; stage 3:
  // the shard is the parameter). Returns the grad norm before clipping. When the norm is not
  // finite, or `apply` is false (the caller found the loss not finite), the reduction and norm
  // still run but nothing is clipped or updated (the same on every rank: the norm is global).
  // Collective over the world.
  double finish_step(const Context& ctx, std::int64_t step, float lr, double max_grad_norm,
                     bool apply = true);
  // Full f32 parameters (the master weights in mixed precision) on every rank, for saving; out
  // is f32 on any device. Collective over the ZeRO group at stage 3, and in mixed precision at
  // every stage >= 1 (the master weights exist only as shards).
  void gather_parameters(model::ParamBuffers& out);

  // This rank's training state: "param.<group>", "exp_avg.<group>", "exp_avg_sq.<group>" for
  // every group name of the layout ("embed", "layers.3", "final"), each [s] f32 (this rank's
  // shard; stage 0: the whole group, [numel]); "param" is the master shard in mixed precision.
  // The tensors are views of the live state (on the device, or in host memory when offloaded):
  // save them before the next step. (The step count is the caller's.)
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // The inverse: Error naming the tensor when one is missing or has another shape (a different
  // ZeRO stage or group size) or dtype. Collective over the ZeRO group at stage 1-2 (the
  // loaded parameter shards are all-gathered into the full buffers).
  void load_state_tensors(const std::map<std::string, Tensor>& tensors);

  // Bytes this rank holds persistently for params / master / grads / optimizer (master = 0 in
  // fp32), and which of them are in host memory because of the offload flags.
  Memory memory() const;
  // Largest transient full buffers held at once since begin_step (stage 2-3 gradients, stage 3
  // gathered parameters), in bytes.
  struct Transient {
    std::int64_t params = 0, grads = 0;
  };
  Transient peak_transient() const { return peak_; }
  // Whether prefetching and asynchronous reduce-scatters are on (ZeroConfig::overlap).
  bool overlap() const { return zero_.overlap; }
  // Prefetched groups that were never acquired (dropped) since construction, for tests.
  std::int64_t dropped_prefetches() const { return dropped_prefetches_; }

  int zero_rank() const { return zero_rank_; }
  int zero_size() const { return zero_size_; }
  const ZeroConfig& zero_config() const { return zero_; }

 private:
  struct Group;
  Group& group(std::size_t index);
  bool mixed() const { return ctx_.compute_dtype != DType::f32; }
  // The tensor on the state's device (itself when it already is there, else a copy).
  Tensor on_device(const Tensor& t) const;
  // dst = src converted to dst's dtype (f32 <-> compute dtype; any devices).
  void convert_into(const Tensor& src, Tensor dst) const;
  // Installs this rank's updated compute-dtype shard (`shard`, [s], any device; may be the
  // resident shard itself): stage 3 stores it, stage 0-2 all-gather it into the full buffer.
  void publish(Group& g, const Tensor& shard);
  // AdamW on one group's master shard with the reduced gradient shard times grad_scale (the
  // clip factor; 1: no clip).
  void update_group(std::size_t index, std::int64_t step, float lr, float grad_scale);
  // AdamW of every parameter of group `index` inside this rank's shard (tensors on
  // optimizer_ctx's device; rounded may be undefined).
  // Elements [begin, end) of the shard only (end < 0: the whole shard); grad and rounded hold
  // that piece ([end - begin]), master and the moments the whole shard. One adamw_multi_step
  // over the group's parameters, each gradient times grad_scale.
  void adamw_ranges(const Context& optimizer_ctx, std::size_t index, std::int64_t step, float lr,
                    float grad_scale, Tensor master, const Tensor& grad, Tensor rounded,
                    std::int64_t begin = 0, std::int64_t end = -1);
  // offload_optimizer on a device in mixed precision: the pipelined host update ("Offload").
  bool pipelined_update() const {
    return zero_.offload_optimizer && !ctx_.device.is_cpu() && mixed();
  }
  void update_offloaded(std::int64_t step, float lr, float grad_scale);
  // The host waits for every queued copy of the copy stream.
  void drain_copies() const;
  void note_transient();
  // Stage 3: allocates g.gathered and starts the all-gather of g's shards into it.
  void start_gather(Group& g);
  // Waits for and frees the prefetched group, if any.
  void drop_prefetch();
  // Sums full f32 gradients over `group` in place, in ZeroConfig::grad_reduce_dtype.
  void all_reduce_grads(comm::Communicator& group, Tensor grads) const;
  // Waits for the started reduce-scatter, if any, and adds its result into the gradient shard
  // (offload_gradients: finishes the shard on the device and sends it to the host).
  void complete_reduce();
  // offload_gradients on a device: the gradient shards are in host memory.
  bool host_grads() const { return zero_.offload_gradients && !ctx_.device.is_cpu(); }
  // offload_gradients: the reduced shard of group `index` ([s] f32 on the device) is added to
  // what the step has accumulated, its sum of squares written to its slot, and it is copied to
  // the host shard.
  void send_grads_to_host(std::size_t index, Tensor reduced);
  // Lets the caching allocator reuse the last shard sent to the host once its copy is done.
  void release_sent_grads();

  Context ctx_;
  model::ModelConfig config_;
  model::ParamLayout layout_;
  Mesh& mesh_;
  ZeroConfig zero_;
  ops::AdamWConfig adamw_;
  int zero_size_ = 1;  // Z (1 at stage 0)
  int zero_rank_ = 0;
  std::vector<Group> groups_;
  Transient current_, peak_;
  std::ptrdiff_t last_acquired_ = -1;  // group of the previous acquire (see "Overlap")
  std::ptrdiff_t prefetched_ = -1;     // group whose gather was started before its acquire
  std::int64_t dropped_prefetches_ = 0;
  // The started reduce-scatter of group reduce_group_ into reduce_result_ ([s] f32).
  std::unique_ptr<comm::Work> reduce_work_;
  Tensor reduce_result_;
  std::size_t reduce_group_ = 0;
  // Pinned staging of the pipelined offloaded update: f32 gradient slots and compute-dtype
  // parameter slots (undefined with offload_params) of min(largest s, kOffloadStageElements)
  // elements, with the marks of their last copies.
  std::array<Tensor, 2> grad_stage_, param_stage_;
  std::array<CopyMark, 2> grad_ready_, params_sent_;
  // Per group, the sum of squares of this rank's gradient shard ([groups] i64 on the device,
  // doubles: ops::sum_of_squares_into), read once by finish_step. offload_gradients: the
  // reduced contributions since begin_step; the last shard sent to the host and its copy's mark.
  Tensor grad_squares_;
  std::vector<int> grad_contributions_;
  Tensor sent_grads_;
  CopyMark sent_grads_mark_;
  // Asynchronous host <-> device copies of the offloaded state (synchronous on the CPU).
  // Last member: the destructor drains it before the buffers above are freed.
  std::unique_ptr<CopyStream> copy_;
};

}  // namespace ulysses::parallel
