// The trainer's plan (what `train` prints before step 1) and its memory checks before setup:
// the memory plan of this run's resolved options, the device budget, and the refusals of a
// run whose plan does not fit the device or whose offloaded state does not fit the host.
#include <algorithm>
#include <sstream>

#include "ulysses/core/cuda_context.h"
#include "ulysses/core/device_memory.h"
#include "ulysses/core/error.h"
#include "ulysses/core/format.h"
#include "ulysses/core/process_env.h"
#include "ulysses/model/config.h"
#include "ulysses/parallel/memory_plan.h"
#include "ulysses/train/metrics.h"
#include "ulysses/train/run_plan.h"
#include "ulysses/train/trainer.h"

namespace ulysses::train {

parallel::MemoryPlanInput Trainer::memory_plan_input() const {
  const auto precision = ctx_.compute_dtype == DType::f32 ? parallel::Precision::fp32
                                                          : parallel::Precision::bf16_mixed;
  parallel::MemoryPlanInput in = train::memory_plan_input(config_, mesh_->config(), precision);
  in.offload_activation_layers = activation_offload_layers_;  // resolved at construction
  return in;
}

parallel::MemoryPlan Trainer::memory_plan() const {
  return parallel::plan_memory(model_config_, memory_plan_input());
}

void Trainer::check_host_memory() const {
  if (!ctx_.device.is_cpu()) return check_offload_host_memory();
  const std::int64_t available = host_available_memory_bytes();
  const parallel::MemoryPlan plan = memory_plan();
  const std::int64_t planned = plan.total() + plan.host_total();  // all of it is host memory
  if (available <= 0 || planned <= available) return;
  UL_FAIL("the plan needs ", format_bytes(planned), " of host memory per rank (--model ",
          config_.model, ", --max-seq-length ", config_.max_seq_length, ", --sp-size ",
          config_.sp_size, ", --zero-stage ", config_.zero_stage, ") but ", format_bytes(available),
          " are available; lower --max-seq-length, add "
          "--gradient-checkpointing, raise --sp-size or --zero-stage (`ulysses info` prints "
          "the plan)");
}

std::int64_t Trainer::device_plan_budget() const {
  if (!ctx_.device.is_cuda()) return 0;
  // What the plan may use: the device's memory less a reserve for the CUDA context, cuBLASLt's
  // and cuDNN's own allocations.
  constexpr std::int64_t kReserve = std::int64_t{1} << 30;
  const auto total = static_cast<std::int64_t>(device_total_memory(ctx_.device.index));
  return total > kReserve ? total - kReserve : 0;
}

void Trainer::check_device_memory() const {
  if (!ctx_.device.is_cuda() || config_.ignore_memory_plan) return;
  const std::int64_t budget = device_plan_budget();
  if (budget <= 0) return;
  const std::string refusal =
      device_fit_refusal(config_, model_config_, mesh_->config(), budget, world_.size(),
                         host_budget_bytes_, activation_offload_layers_);
  if (!refusal.empty()) UL_FAIL(refusal);
}

void Trainer::check_offload_host_memory() const {
  if (!config_.offload_optimizer && !config_.offload_params) return;
  const std::int64_t available = host_available_memory_bytes();
  if (available <= 0) return;
  const auto z = parallel::zero_memory_formula(
      model_config_, zero_config(config_),
      static_cast<int>(mesh_->config().dp_shard_size * mesh_->config().sp_size),
      memory_plan_input().precision);
  // The ranks of one node share its memory. (This runs before the pinned activation buffers
  // exist; their count was sized to what the states leave.)
  const std::int64_t ranks_here = std::max(1, launcher_local_rank().size);
  const std::int64_t needed = (z.offloaded + z.host_staging) * ranks_here;
  if (needed <= available) return;
  UL_FAIL("the offloaded state needs ", format_bytes(needed), " of host memory (",
          format_bytes(z.offloaded), " offloaded + ", format_bytes(z.host_staging),
          " staging per rank x ", ranks_here, " ranks on this node; --model ", config_.model,
          ", --zero-stage ", config_.zero_stage,
          config_.offload_optimizer ? ", --offload-optimizer" : "",
          config_.offload_params ? ", --offload-params" : "",
          config_.offload_gradients ? ", --offload-gradients" : "", ") but ",
          format_bytes(available),
          " are available; shard over more ranks (more nodes), drop --offload-gradients, "
          "--offload-params or --offload-optimizer, or free host memory");
}

std::string Trainer::plan() const {
  const model::ModelConfig& c = model_config_;
  std::ostringstream out;
  out << "model: " << config_.model << " (" << model::model_type_name(c.model_type) << ", "
      << c.num_hidden_layers << " layers, hidden " << c.hidden_size << ", heads "
      << c.num_attention_heads << "/" << c.num_key_value_heads << " kv, head_dim " << c.head_dim
      << ", vocab " << c.vocab_size << ", " << model::parameter_count(c) << " parameters)\n";
  out << mesh_->describe(static_cast<int>(config_.zero_stage));
  out << "  schedules: attention " << attention_->name();
  if (config_.gradient_checkpointing)
    out << ", checkpointing keeps layer inputs"
        << (!config_.recompute_attention ? " and attention outputs"
            : config_.recompute_attention_layers < 0
                ? " (attention recomputed)"
                : " (attention recomputed in the first " +
                      std::to_string(config_.recompute_attention_layers) + " of " +
                      std::to_string(c.num_hidden_layers) + " layers" +
                      (recompute_layers_chosen_ ? ", chosen by the memory plan)" : ")"));
  if (config_.gradient_checkpointing && config_.checkpoint_layers >= 0 &&
      config_.checkpoint_layers < c.num_hidden_layers)
    out << ", only the first " << config_.checkpoint_layers << " of " << c.num_hidden_layers
        << " layers checkpointed (the rest kept whole"
        << (checkpoint_layers_chosen_ ? ", chosen by the memory plan)" : ")");
  if (const std::int64_t tile = effective_mlp_tile(config_);
      tile > 0 && tile < config_.max_seq_length / config_.sp_size)
    out << ", MLP in tiles of " << tile << " tokens";
  out << ", loss in tiles of " << config_.loss_tile_tokens << " tokens"
      << (loss_tile_chosen_ ? " (auto)" : "");
  if (config_.offload_activations) {
    if (ctx_.device.is_cpu())
      out << ", kept activations in host memory already (CPU)";
    else
      out << ", kept activations of " << activation_offload_layers_ << " of " << c.num_hidden_layers
          << " layers offloaded to pinned host memory";
  }
  if (config_.zero_stage >= 2)
    out << ", ZeRO overlap " << (config_.zero_overlap ? "on" : "off (--no-zero-overlap)");
  out << "\n";
  out << "data: " << source_->describe() << ", " << (config_.packing ? "packed" : "unpacked")
      << " into sequences of " << config_.max_seq_length << " tokens\n";
  if (evaluator_)
    out << "eval: " << evaluator_->describe() << "; " << evaluator_->eval_steps(mesh_->dp_size())
        << " eval steps, every "
        << (config_.eval_steps > 0 ? std::to_string(config_.eval_steps) + " steps and " : "")
        << "at the end\n";
  if (const auto epoch = plan_epoch(*source_, config_, global_batch_sequences()))
    out << format_epoch(*epoch, config_);
  out << "batch: " << config_.per_device_train_batch_size << " sequences per SP group x "
      << mesh_->dp_size() << " data-parallel groups x " << config_.gradient_accumulation_steps
      << " accumulation steps = " << global_batch_sequences() << " sequences per optimizer step\n";
  const parallel::MemoryPlanInput in = memory_plan_input();
  out << "device: " << ctx_.device.str() << " (" << dtype_name(ctx_.compute_dtype) << " compute, "
      << mesh_->world().backend() << " collectives)\n";
  const parallel::MemoryPlan memory = memory_plan();
  if (config_.zero_stage > 0) {
    const auto z =
        parallel::zero_memory_formula(c, zero_config(config_), in.zero_group, in.precision);
    out << "zero: stage " << config_.zero_stage << " over " << in.zero_group
        << " ranks (dp_shard x sp)";
    if (z.offloaded) out << ", " << format_bytes(z.offloaded) << " offloaded to host";
    out << "\n";
  }
  out << parallel::format_memory_plan(memory, in);
  const parallel::ZeroMemory held = zero_->memory();
  if (!ctx_.device.is_cpu() && held.offloaded + held.host_staging > 0)
    out << "  host memory of this rank: " << format_bytes(held.offloaded) << " offloaded + "
        << format_bytes(held.host_staging) << " staging, " << format_bytes(held.pinned)
        << " of it pinned\n";
  out << "setup: training state allocated in " << format_seconds(setup_times_.state_s)
      << ", weights " << setup_times_.weights_source << " in "
      << format_seconds(setup_times_.weights_s) << " (this rank's shards only)\n";
  return out.str();
}

}  // namespace ulysses::train
