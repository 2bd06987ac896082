// Run plan: what a TrainConfig asks of each device and of the data, computed without starting
// the run, so `ulysses info` and the trainer's plan say the same. Memory per device of the
// layout (parallel/memory_plan.h for the model's part, parallel/zero.h for the ZeRO shards),
// whether it fits a device and which option changes make it fit; the first epoch of the
// training data packed as the trainer packs it (steps and tokens per epoch), and
// --num-train-epochs resolved into steps.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ulysses/data/source.h"
#include "ulysses/model/config.h"
#include "ulysses/parallel/memory_plan.h"
#include "ulysses/parallel/mesh.h"
#include "ulysses/train/train_config.h"

namespace ulysses::train {

// The data options of a training config (the model's tokenizer for text lines).
data::DataOptions data_options(const TrainConfig& config, std::int64_t vocab_size);

struct RunMemory {
  parallel::MemoryPlanInput input;  // tokens per device = max_seq_length / sp_size
  parallel::MemoryPlan plan;        // ZeRO stage > 0: the model states are this rank's shards
  // What the device holds (CUDA; on the CPU everything is host memory), and what the offloads
  // (model states, activations) keep in host memory per rank.
  std::int64_t device_bytes() const { return plan.total(); }
  std::int64_t host_bytes() const { return plan.host_total(); }
};

// The memory-plan input of `config` under `layout` (dp_shard_size resolved): tokens per device,
// checkpointing, attention recompute, the MLP tile the step uses, ZeRO stage over the dp_shard x
// sp ranks, the offloads (activation offload only in bf16 mixed precision, the CUDA backend;
// --offload-activation-layers -1 resolved against host_budget_bytes when given, every layer
// otherwise).
parallel::MemoryPlanInput memory_plan_input(const TrainConfig& config,
                                            const parallel::ParallelConfig& layout,
                                            parallel::Precision precision,
                                            std::int64_t host_budget_bytes = 0);

// The per-device (and per-host) budget of `config` under `layout`, as the trainer prints it
// before step 1 (parallel::plan_memory of memory_plan_input).
RunMemory run_memory(const TrainConfig& config, const model::ModelConfig& model,
                     const parallel::ParallelConfig& layout, parallel::Precision precision,
                     std::int64_t host_budget_bytes = 0);

// Does `config` fit `budget_bytes` per device, and if not, which single changes would.
struct FitAdvice {
  bool fits = false;
  std::int64_t device_bytes = 0;
  // The largest --max-seq-length (a multiple of --sp-size) that fits with the other options
  // unchanged (0: not even sp_size tokens).
  std::int64_t max_seq_length_that_fits = 0;
  std::vector<std::string> changes;  // e.g. "--zero-stage 3 (52.1 GiB)"; only those that fit
};
FitAdvice advise_fit(const TrainConfig& config, const model::ModelConfig& model,
                     const parallel::ParallelConfig& layout, parallel::Precision precision,
                     std::int64_t budget_bytes, int world_size, std::int64_t host_budget_bytes = 0);
std::string format_fit(const FitAdvice& advice, std::int64_t budget_bytes);

// Before a GPU run's setup: "" when the plan of `config` fits `device_bytes` (the device's
// memory less a reserve for the CUDA context and libraries), else the refusal naming the plan,
// the device, the single changes that would fit and --ignore-memory-plan.
std::string device_fit_refusal(const TrainConfig& config, const model::ModelConfig& model,
                               const parallel::ParallelConfig& layout, std::int64_t device_bytes,
                               int world_size, std::int64_t host_budget_bytes,
                               std::int64_t offload_activation_layers);

// Checkpointing's per-layer choice under a device and a host budget: `recompute_layers`
// (layers 0 .. N-1 recompute attention; -1: all, 0: none) and `offload_layers` (layers
// 0 .. K-1 wait in host memory; 0 without --offload-activations). With
// --recompute-attention-layers auto, N is the fewest for which the plan (with K resolved for
// that N, as the trainer resolves --offload-activation-layers -1) fits 97% of device_bytes
// (headroom for the plan's error) and host_budget_bytes; every layer when none fits (the
// fit check then refuses the run). Otherwise N and K are the configured ones, K resolved.
// With --checkpoint-layers auto, `checkpoint_layers` is the fewest checkpointed layers for which
// the plan fits 97% of device_bytes (-1: every layer, when only that or nothing fits);
// otherwise the configured count.
struct ActivationChoice {
  std::int64_t recompute_layers = -1;
  std::int64_t offload_layers = 0;
  std::int64_t checkpoint_layers = -1;
};
ActivationChoice resolve_activation_choice(const TrainConfig& config,
                                           const model::ModelConfig& model,
                                           const parallel::ParallelConfig& layout,
                                           std::int64_t device_bytes,
                                           std::int64_t host_budget_bytes);

// --loss-tile-tokens: the configured tile, or for auto on a GPU (`cuda`) the largest of
// kLossTileChoices whose plan (config's activation choices already resolved) fits 97% of
// device_bytes; kLossTileTokensFallback on the CPU, without a budget, or when none larger fits.
inline constexpr std::int64_t kLossTileChoices[] = {4096, 2048};
std::int64_t resolve_loss_tile(const TrainConfig& config, const model::ModelConfig& model,
                               const parallel::ParallelConfig& layout, bool cuda,
                               std::int64_t device_bytes, std::int64_t host_budget_bytes);

// The first epoch of the training data as the trainer draws it (shuffled order, packed).
struct EpochPlan {
  std::int64_t documents = 0;  // after --long-documents
  std::int64_t sequences = 0;
  std::int64_t tokens = 0;  // of those sequences, padding included
  double steps = 0;         // optimizer steps per epoch: sequences / global batch
};
// nullopt for an endless source (synthetic-copy). Reads every document once.
std::optional<EpochPlan> plan_epoch(const data::DocumentSource& source, const TrainConfig& config,
                                    std::int64_t global_batch_sequences);
std::string format_epoch(const EpochPlan& epoch, const TrainConfig& config);

// validate(config, world_size), then with --num-train-epochs > 0 the config whose max_steps is
// ceil(num_train_epochs x steps per epoch): the sequences of that many epochs, the last batch
// completed (Hugging Face's Trainer rounds per epoch instead; here epochs run into each other,
// packed as one stream); Error naming --num-train-epochs for an endless data source.
TrainConfig resolve_training_length(const TrainConfig& config, int world_size);

// `ulysses info`: the plan of a train command line (`options`, same meanings) without running
// it, for a job of `world_size` ranks (0: sp x dp_replicate x dp_shard) with `memory_gib` per
// device (0: no fit check) and `precision` auto (bf16 unless --device cpu), fp32 or bf16: the
// model's shapes and FLOPs, the layout, the memory per device, the fit and what to change, the
// ZeRO table, and the epoch plan when --data is a finite set. Errors as train reports them.
// host_memory_gib > 0: host memory per rank (resolves --offload-activation-layers -1, checks
// the host side of the fit) and, with memory_gib, the longest sequence per offload choice.
std::string info_report(const TrainConfig& options, int world_size, double memory_gib,
                        const std::string& precision, double host_memory_gib = 0);

}  // namespace ulysses::train
