#include "ulysses/parallel/zero.h"

#include <algorithm>
#include <cmath>

#include "ulysses/core/copy_stream.h"
#include "ulysses/core/error.h"
#include "ulysses/core/log.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/parallel/zero_group.h"

namespace ulysses::parallel {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// A stage-3 gather of one rank (Z = 1) from pinned host memory: an asynchronous copy on the
// copy stream; wait() makes the compute stream wait for it. Holds the source shard until then.
class CopyWork final : public comm::Work {
 public:
  CopyWork(CopyStream& stream, CopyMark mark, Tensor source)
      : stream_(stream), mark_(std::move(mark)), source_(std::move(source)) {}
  ~CopyWork() override { wait(); }
  void wait() override {
    if (done_) return;
    done_ = true;
    stream_.compute_waits(mark_);
  }

 private:
  CopyStream& stream_;
  CopyMark mark_;
  Tensor source_;
  bool done_ = false;
};

}  // namespace

ZeroState::ZeroState(const model::ModelConfig& config, Mesh& mesh, const ZeroConfig& zero,
                     const ops::AdamWConfig& adamw)
    : ZeroState(Context{}, config, mesh, zero, adamw) {}

ZeroState::ZeroState(const Context& ctx, const model::ModelConfig& config, Mesh& mesh,
                     const ZeroConfig& zero, const ops::AdamWConfig& adamw)
    : ctx_(ctx), config_(config), layout_(config), mesh_(mesh), zero_(zero), adamw_(adamw) {
  validate_zero_config(zero, mesh.replicate_group().size());
  UL_CHECK(ctx.compute_dtype == DType::f32 || ctx.compute_dtype == DType::bf16,
           "ZeroState: compute dtype ", dtype_name(ctx.compute_dtype), " (expected f32 or bf16)");
  UL_CHECK(!ctx.device.is_cpu() || ctx.compute_dtype == DType::f32,
           "ZeroState: the CPU backend computes in f32, got compute dtype ",
           dtype_name(ctx.compute_dtype));
  if (zero.stage >= 1) {
    zero_size_ = mesh.zero_group().size();
    zero_rank_ = mesh.zero_group().rank();
  }
  const Device device = ctx.device;
  // Offloaded buffers of a device state live in host memory; those the device copies from or
  // into during a step (`dma`: the bf16 parameter shards) are pinned, so their copies are
  // asynchronous. The master shard and moments never cross to the device in a step (AdamW runs
  // where they are): pageable, first touched in parallel, which keeps setup short.
  const auto zeros_on = [&](bool offloaded, const Shape& shape, DType dtype, bool dma) {
    if (!offloaded) return Tensor::zeros(shape, dtype, device);
    return device.is_cpu() || !dma ? Tensor::zeros(shape, dtype)
                                   : Tensor::zeros_pinned(shape, dtype);
  };
  std::int64_t stage_slot = 0;
  for (const auto& spec : layout_.groups()) {
    Group g;
    g.numel = spec.numel;
    g.shard = ceil_div(spec.numel, zero_size_);
    g.padded = g.shard * zero_size_;
    g.lo = g.shard * zero_rank_;
    g.params_sharded = zero.stage >= 3;
    g.grads_sharded = zero.stage >= 2;
    g.params = g.params_sharded
                   ? zeros_on(zero.offload_params, {g.shard}, ctx.compute_dtype, /*dma=*/true)
                   : Tensor::zeros({g.padded}, ctx.compute_dtype, device);
    // (f32 on a device, tests only: the parameters are the master and go through host copies)
    if (mixed()) g.master = zeros_on(zero.offload_optimizer, {g.shard}, DType::f32, false);
    // offload_gradients: the stage 2-3 shard is a copy target of the backward (pinned).
    const std::int64_t grad_elements = g.grads_sharded ? g.shard : g.padded;
    g.grads = host_grads() ? Tensor::zeros_pinned({g.shard}, DType::f32)
                           : Tensor::zeros({grad_elements}, DType::f32, device);
    g.exp_avg = zeros_on(zero.offload_optimizer, {g.shard}, DType::f32, false);
    g.exp_avg_sq = zeros_on(zero.offload_optimizer, {g.shard}, DType::f32, false);
    stage_slot = std::max(stage_slot, std::min(g.shard, zero.offload_stage_elements));
    groups_.push_back(std::move(g));
  }
  grad_contributions_.assign(groups_.size(), 0);
  grad_squares_ = Tensor::zeros({static_cast<std::int64_t>(groups_.size())}, DType::i64, device);
  copy_ = std::make_unique<CopyStream>(ctx_);
  // The offloaded update's staging (see "Offload"): two gradient shards and, unless the bf16
  // shards live in host memory themselves, two compute-dtype shards, in pinned host memory.
  if (pipelined_update()) {
    if (!host_grads())  // offloaded gradient shards are read where they lie
      for (auto& t : grad_stage_) t = Tensor::zeros_pinned({stage_slot}, DType::f32);
    if (!zero.offload_params)
      for (auto& t : param_stage_) t = Tensor::zeros_pinned({stage_slot}, ctx.compute_dtype);
  }
  const ZeroMemory held = memory();
  const std::int64_t to_pin =
      (zero.offload_params ? held.params : 0) + (host_grads() ? held.grads : 0) + held.host_staging;
  if (!device.is_cpu() && held.pinned < to_pin)
    log_warn("ZeRO offload: ", format_bytes(to_pin - held.pinned),
             " of host memory could not be page-locked (cudaHostRegister failed: check "
             "`ulimit -l`); their copies are synchronous and slower");
}

// Unwaited Works wait in their destructors (in stream order, before their buffers go); then the
// copy stream is drained before the pinned buffers are unregistered and freed.
ZeroState::~ZeroState() {
  for (Group& g : groups_) g.gather_work.reset();
  reduce_work_.reset();
  drain_copies();
  sent_grads_ = Tensor();
}

void ZeroState::drain_copies() const {
  if (copy_) CopyStream::host_waits(copy_->record());
}

ZeroState::Group& ZeroState::group(std::size_t index) {
  UL_CHECK(index < groups_.size(), "ZeroState: parameter group ", index, " out of range (",
           groups_.size(), " groups)");
  return groups_[index];
}

Tensor ZeroState::on_device(const Tensor& t) const {
  return t.device() == ctx_.device ? t : t.to(ctx_.device);
}

void ZeroState::convert_into(const Tensor& src, Tensor dst) const {
  if (src.dtype() == dst.dtype()) return dst.copy_from(src);
  if (dst.device().is_cpu() && src.device().is_cpu() && src.dtype() == DType::f32 &&
      dst.dtype() == DType::bf16) {  // host to host (offloaded shards): RNE on every thread
    const float* in = src.data<float>();
    bf16* out = dst.data<bf16>();
    const std::int64_t n = src.numel();
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(in[i]);
    return;
  }
  if (dst.device().is_cpu())  // host memory (CPU backend or offloaded): the CPU rounding (RNE)
    return dst.copy_from((src.device().is_cpu() ? src : src.to(Device::cpu())).to(dst.dtype()));
  ops::convert(ctx_, on_device(src), dst);  // the same rounding on the device
}

void ZeroState::publish(Group& g, const Tensor& shard) {
  Tensor own = g.param_shard();  // [s] where this rank's shard lives
  const bool in_place = shard.device() == own.device() && shard.raw() == own.raw();
  if (zero_.stage >= 3 || zero_size_ == 1) {
    if (!in_place) own.copy_from(shard);
    return;
  }
  // Stage 1-2 over Z > 1 ranks. The send buffer must not overlap the receive buffer.
  const Tensor send = in_place ? own.clone() : on_device(shard);  // [s]
  mesh_.zero_group().all_gather(send, g.params);
}

void ZeroState::note_transient() {
  peak_.params = std::max(peak_.params, current_.params);
  peak_.grads = std::max(peak_.grads, current_.grads);
}

void ZeroState::start_gather(Group& g) {
  g.gathered = Tensor::empty({g.padded}, ctx_.compute_dtype, ctx_.device);
  if (g.params.device() == ctx_.device) {
    g.gather_work = mesh_.zero_group().all_gather_start(g.params, g.gathered);
  } else {
    // Offloaded (pinned) shard: copied on the copy stream, after the compute stream's queued
    // work (which may still use the memory the caching allocator just handed out). One rank:
    // the copy is the gather, and the compute stream waits for it only at acquire.
    copy_->wait_for_compute();
    if (zero_size_ == 1) {
      copy_->copy(g.gathered, g.params);
      g.gather_work = std::make_unique<CopyWork>(*copy_, copy_->record(), g.params);
    } else {
      Tensor staged = Tensor::empty({g.shard}, ctx_.compute_dtype, ctx_.device);  // [s]
      copy_->copy(staged, g.params);
      copy_->compute_waits(copy_->record());
      g.gather_work = mesh_.zero_group().all_gather_start(staged, g.gathered);
    }
  }
  current_.params += static_cast<std::int64_t>(g.gathered.nbytes());
  note_transient();
}

void ZeroState::drop_prefetch() {
  if (prefetched_ < 0) return;
  Group& g = groups_[static_cast<std::size_t>(prefetched_)];
  prefetched_ = -1;
  g.gather_work->wait();
  g.gather_work.reset();
  current_.params -= static_cast<std::int64_t>(g.gathered.nbytes());
  g.gathered = Tensor();
  ++dropped_prefetches_;
}

Tensor ZeroState::acquire(std::size_t index) {
  Group& g = group(index);
  if (zero_.stage < 3) return g.params.rows(0, g.numel);
  if (g.acquire_count++ == 0) {
    if (prefetched_ == static_cast<std::ptrdiff_t>(index)) {
      prefetched_ = -1;  // its all-gather was started by an earlier acquire
    } else {
      start_gather(g);
    }
    g.gather_work->wait();
    g.gather_work.reset();
  }
  // Prefetch the group the decoder will need next: i + 1 after i - 1, i (forward); i - 1 after
  // i + 1, i (backward). At most one prefetched group: an older one is dropped.
  const auto i = static_cast<std::ptrdiff_t>(index);
  const std::ptrdiff_t step = i - last_acquired_;
  last_acquired_ = i;
  if (zero_.overlap && (step == 1 || step == -1)) {
    const std::ptrdiff_t next = i + step;
    if (next >= 0 && next < static_cast<std::ptrdiff_t>(groups_.size())) {
      Group& n = groups_[static_cast<std::size_t>(next)];
      if (n.acquire_count == 0 && !n.gathered.defined()) {
        drop_prefetch();
        start_gather(n);
        prefetched_ = next;
      }
    }
  }
  return g.gathered.rows(0, g.numel);
}

void ZeroState::release(std::size_t index) {
  Group& g = group(index);
  if (zero_.stage < 3) return;
  UL_CHECK(g.acquire_count > 0, "ZeroState: release of group ", index, " without acquire");
  if (--g.acquire_count == 0) {
    current_.params -= static_cast<std::int64_t>(g.gathered.nbytes());
    g.gathered = Tensor();
  }
}

Tensor ZeroState::grads(std::size_t index) {
  Group& g = group(index);
  if (zero_.stage < 2) return g.grads.rows(0, g.numel);
  if (!g.grad_full.defined()) {
    g.grad_full = Tensor::zeros({g.padded}, DType::f32, ctx_.device);
    current_.grads += g.padded * 4;
    note_transient();
  }
  return g.grad_full.rows(0, g.numel);
}

void ZeroState::grads_done(std::size_t index) {
  Group& g = group(index);
  if (zero_.stage < 2) return;
  UL_CHECK(g.grad_full.defined(), "ZeroState: grads_done for group ", index, " without gradients");
  // The previous group's reduce-scatter is added first: the additions into every shard keep
  // the order of the grads_done calls.
  complete_reduce();
  reduce_result_ = Tensor::empty({g.shard}, DType::f32, ctx_.device);  // [s] sum over ZeRO group
  reduce_work_ =
      mesh_.zero_group().reduce_scatter_start(g.grad_full, reduce_result_, comm::ReduceOp::sum);
  reduce_group_ = index;
  g.grad_full = Tensor();  // the Work holds it until the reduce-scatter is done
  if (!zero_.overlap) complete_reduce();
}

void ZeroState::complete_reduce() {
  if (!reduce_work_) return;
  Group& g = groups_[reduce_group_];
  reduce_work_->wait();
  reduce_work_.reset();  // releases the full gradient buffer
  current_.grads -= g.padded * 4;
  if (host_grads()) {
    send_grads_to_host(reduce_group_, std::move(reduce_result_));
  } else {
    ops::add_inplace(ctx_, g.grads, reduce_result_);
  }
  reduce_result_ = Tensor();
}

void ZeroState::all_reduce_grads(comm::Communicator& group, Tensor grads) const {
  if (zero_.grad_reduce_dtype == DType::f32) return group.all_reduce(grads, comm::ReduceOp::sum);
  Tensor half = Tensor::empty(grads.shape(), zero_.grad_reduce_dtype, grads.device());
  convert_into(grads, half);
  group.all_reduce(half, comm::ReduceOp::sum);
  convert_into(half, grads);
}

void ZeroState::set_parameters(const model::ParamBuffers& full) {
  UL_CHECK(full.flat().size() == groups_.size(), "set_parameters: ", full.flat().size(),
           " parameter groups, expected ", groups_.size());
  for (std::size_t i = 0; i < groups_.size(); ++i) {
    check_dtype(full.flat()[i], DType::f32, "set_parameters: full parameters");
    check_shape(full.flat()[i], {groups_[i].numel}, "set_parameters: full parameters");
  }
  set_parameters([&](std::size_t i, std::int64_t lo, Tensor out) {
    const Tensor& src = full.flat()[i];  // [numel] f32
    const std::int64_t valid = std::clamp<std::int64_t>(src.numel() - lo, 0, out.numel());
    if (valid < out.numel()) out.rows(valid, out.numel()).zero_();
    if (valid > 0) convert_into(src.rows(lo, lo + valid), out.rows(0, valid));
  });
}

void ZeroState::set_parameters(const GroupRangeSource& source) {
  drop_prefetch();  // it would hold the old parameters
  drain_copies();
  for (std::size_t i = 0; i < groups_.size(); ++i) {
    Group& g = groups_[i];
    if (!mixed()) {  // the parameters are the master weights
      source(i, zero_.stage < 3 ? 0 : g.lo, g.params);
      continue;
    }
    // The master shard ([s] f32) and the compute parameters (stage 0-2: the [padded] group;
    // stage 3: the [s] shard), each written where it lives: no copy between host and device.
    source(i, g.lo, g.master);
    source(i, zero_.stage < 3 ? 0 : g.lo, g.params);
  }
}

void ZeroState::begin_step() {
  complete_reduce();
  drop_prefetch();
  last_acquired_ = -1;  // the next forward starts at group 0
  release_sent_grads();
  for (Group& g : groups_) {
    UL_CHECK(!g.grad_full.defined(), "begin_step: a backward did not call grads_done");
    // Offloaded shards: a step's first contribution overwrites them (finish_step zeroes those
    // that got none).
    if (!host_grads()) g.grads.zero_();
  }
  std::fill(grad_contributions_.begin(), grad_contributions_.end(), 0);
  peak_ = current_;
}

void ZeroState::adamw_ranges(const Context& optimizer_ctx, std::size_t index, std::int64_t step,
                             float lr, float grad_scale, Tensor master, const Tensor& grad,
                             Tensor rounded, std::int64_t begin, std::int64_t end) {
  Group& g = groups_[index];
  if (end < 0) end = g.shard;
  std::vector<ops::AdamWRange> ranges;
  for (const auto& spec : layout_.groups()[index].params) {
    // [a, b): the parameter's elements inside this piece, relative to the shard.
    const std::int64_t a = std::max(spec.offset - g.lo, begin);
    const std::int64_t b = std::min(spec.offset + shape_numel(spec.shape) - g.lo, end);
    if (b <= a) continue;
    ranges.push_back({master.rows(a, b), grad.rows(a - begin, b - begin), g.exp_avg.rows(a, b),
                      g.exp_avg_sq.rows(a, b),
                      rounded.defined() ? rounded.rows(a - begin, b - begin) : Tensor(),
                      spec.weight_decay});
  }
  ops::AdamWConfig hyper = adamw_;
  hyper.lr = lr;
  // One launch per 32 parameters on a device; the clip factor scales the gradients inside it.
  ops::adamw_multi_step(optimizer_ctx, hyper, step, ranges, grad_scale);
}

void ZeroState::update_group(std::size_t index, std::int64_t step, float lr, float grad_scale) {
  Group& g = groups_[index];
  // offload_optimizer on a device: the update runs on the CPU, where the state lives.
  const bool on_host = zero_.offload_optimizer && !ctx_.device.is_cpu();
  const Context optimizer_ctx = on_host ? Context{} : ctx_;
  Tensor grad = g.grad_shard();      // [s] f32, reduced (clipped inside AdamW)
  Tensor master = g.master_shard();  // [s] f32
  if (on_host) {
    grad = grad.to(Device::cpu());
    if (!mixed()) master = master.to(Device::cpu());  // f32 on a device: params are the master
  }
  // Mixed precision: the updated shard rounded to the compute dtype, written by AdamW in the
  // same pass: straight into the resident shard when it is on this device and needs no
  // all-gather, else into a zeroed temporary (its padding stays zero).
  Tensor rounded;
  if (mixed()) {
    const Tensor own = g.param_shard();
    if (!on_host && own.device() == ctx_.device && (zero_.stage >= 3 || zero_size_ == 1))
      rounded = own;
    else
      rounded = Tensor::zeros({g.shard}, ctx_.compute_dtype, optimizer_ctx.device);
  }
  adamw_ranges(optimizer_ctx, index, step, lr, grad_scale, master, grad, rounded);
  if (mixed()) return publish(g, rounded);
  if (on_host) g.param_shard().copy_from(master);
  publish(g, g.param_shard());
}

double ZeroState::finish_step(const Context& ctx, std::int64_t step, float lr, double max_grad_norm,
                              bool apply) {
  UL_CHECK(ctx.device == ctx_.device, "finish_step: context on ", ctx.device.str(),
           " but the ZeRO state lives on ", ctx_.device.str());
  for (const Group& g : groups_)
    UL_CHECK(!g.grad_full.defined(), "finish_step: a backward did not call grads_done");
  // 0. The last reduce-scatter is added; an unused prefetched group would hold the parameters
  // before this update.
  complete_reduce();
  release_sent_grads();
  drop_prefetch();
  drain_copies();  // no copy of a prefetch may still read a host shard AdamW rewrites, and the
                   // offloaded gradient shards are complete
  if (host_grads())
    for (std::size_t i = 0; i < groups_.size(); ++i)
      if (grad_contributions_[i] == 0) groups_[i].grads.zero_();  // no backward reached it
  last_acquired_ = -1;  // the next forward starts at group 0
  // 1. Reduce: every rank's gradients become the sum over the world.
  comm::Communicator& world = mesh_.world();
  comm::Communicator& replicas = mesh_.replicate_group();
  for (Group& g : groups_) {
    if (zero_.stage < 2) {
      if (world.size() > 1) all_reduce_grads(world, g.grads);
    } else if (replicas.size() > 1) {
      replicas.all_reduce(g.grads, comm::ReduceOp::sum);
    }
  }
  // 2. Global norm: this rank's shards (padding is zero; on the device, double accumulation,
  // one read for all groups; offloaded shards had theirs taken on the device in backward),
  // then the ZeRO group's partial sums in rank order on the host.
  if (!host_grads())
    for (std::size_t i = 0; i < groups_.size(); ++i)
      ops::sum_of_squares_into(ctx_, groups_[i].grad_shard(), grad_squares_,
                               static_cast<std::int64_t>(i));
  const std::vector<double> squares = ops::read_sums(ctx_, grad_squares_);
  double sum = 0;
  for (std::size_t i = 0; i < groups_.size(); ++i)
    if (!host_grads() || grad_contributions_[i] > 0) sum += squares[i];
  if (zero_.stage >= 1) sum = comm::sum_in_rank_order(mesh_.zero_group(), sum);
  const double norm = std::sqrt(sum);
  // A non-finite norm (or a step the caller rejects) changes nothing: no clip, no update.
  if (!apply || !std::isfinite(norm)) return norm;
  // 3. Clip (torch's clip_grad_norm_ rule): the factor scales each gradient inside AdamW, in
  // f32, the same bits as scaling the shards first (the gradients themselves stay unclipped).
  float clip = 1.0f;
  if (max_grad_norm > 0) {
    const double factor = max_grad_norm / (norm + 1e-6);
    if (factor < 1.0) clip = static_cast<float>(factor);
  }
  // 4. AdamW on the owned elements of every parameter (weight decay per ParamSpec), then the
  // parameters are refreshed (stage 0-2: all-gathered into the full buffers).
  if (pipelined_update()) {
    update_offloaded(step, lr, clip);
  } else {
    for (std::size_t i = 0; i < groups_.size(); ++i) update_group(i, step, lr, clip);
  }
  return norm;
}

void ZeroState::gather_parameters(model::ParamBuffers& out) {
  UL_CHECK(out.flat().size() == groups_.size(), "gather_parameters: ", out.flat().size(),
           " parameter groups, expected ", groups_.size());
  for (std::size_t i = 0; i < groups_.size(); ++i) {
    Group& g = groups_[i];
    Tensor dst = out.flat()[i];  // [numel] f32
    check_shape(dst, {g.numel}, "gather_parameters: out");
    check_dtype(dst, DType::f32, "gather_parameters: out");
    if (!mixed() && zero_.stage < 3) {  // the full f32 parameters are resident
      dst.copy_from(g.params.rows(0, g.numel));
      continue;
    }
    const Tensor shard = g.master_shard();  // [s] f32
    if (zero_size_ == 1) {
      dst.copy_from(shard.rows(0, g.numel));
      continue;
    }
    Tensor full = Tensor::empty({g.padded}, DType::f32, ctx_.device);  // [padded]
    mesh_.zero_group().all_gather(on_device(shard), full);
    dst.copy_from(full.rows(0, g.numel));
  }
}

std::vector<std::pair<std::string, Tensor>> ZeroState::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (std::size_t i = 0; i < groups_.size(); ++i) {
    const Group& g = groups_[i];
    const std::string& name = layout_.groups()[i].name;
    out.emplace_back("param." + name, g.master_shard());
    out.emplace_back("exp_avg." + name, g.exp_avg);
    out.emplace_back("exp_avg_sq." + name, g.exp_avg_sq);
  }
  return out;
}

void ZeroState::load_state_tensors(const std::map<std::string, Tensor>& tensors) {
  // Check everything before changing anything.
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, source)
  for (auto& [name, dst] : state_tensors()) {
    const auto it = tensors.find(name);
    if (it == tensors.end())
      UL_FAIL("ZeRO state: tensor '", name, "' is missing from the checkpoint (ZeRO stage ",
              zero_.stage, ", ZeRO group of ", zero_size_, " ranks)");
    const Tensor& src = it->second;
    if (src.dtype() != DType::f32 || src.shape() != dst.shape())
      UL_FAIL("ZeRO state: tensor '", name, "' has shape ", shape_str(src.shape()), " ",
              dtype_name(src.dtype()), " in the checkpoint but ", shape_str(dst.shape()),
              " f32 is expected (ZeRO stage ", zero_.stage, ", ZeRO group of ", zero_size_,
              " ranks); resume with the ZeRO stage and layout the checkpoint was saved with");
    copies.emplace_back(dst, src);
  }
  drop_prefetch();  // it would hold the old parameters
  drain_copies();
  for (auto& [dst, src] : copies) dst.copy_from(src);
  // The compute parameters follow the loaded master shards.
  for (Group& g : groups_) {
    if (!mixed()) {
      publish(g, g.param_shard());
      continue;
    }
    Tensor rounded = Tensor::empty({g.shard}, ctx_.compute_dtype, g.master.device());  // [s]
    convert_into(g.master, rounded);
    publish(g, rounded);
  }
}

ZeroMemory ZeroState::memory() const {
  ZeroMemory m;
  for (const Group& g : groups_) {
    m.params += static_cast<std::int64_t>(g.params.nbytes());
    if (g.master.defined()) m.master += static_cast<std::int64_t>(g.master.nbytes());
    m.grads += static_cast<std::int64_t>(g.grads.nbytes());
    m.optimizer += static_cast<std::int64_t>(g.exp_avg.nbytes() + g.exp_avg_sq.nbytes());
  }
  if (zero_.offload_optimizer) m.offloaded += m.optimizer + m.master;
  if (zero_.offload_params) m.offloaded += m.params;
  if (zero_.offload_gradients) m.offloaded += m.grads;
  const auto count_pinned = [&](const Tensor& t) {
    if (t.defined() && t.pinned()) m.pinned += static_cast<std::int64_t>(t.nbytes());
  };
  for (const Group& g : groups_)
    for (const Tensor* t : {&g.params, &g.master, &g.grads, &g.exp_avg, &g.exp_avg_sq})
      count_pinned(*t);
  for (const auto* stage : {&grad_stage_, &param_stage_})
    for (const Tensor& t : *stage) {
      if (t.defined()) m.host_staging += static_cast<std::int64_t>(t.nbytes());
      count_pinned(t);
    }
  return m;
}

}  // namespace ulysses::parallel
