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
  std::int64_t offloaded = 0;       // of plan.total(), bytes the offload flags keep in host memory
  // What the device holds: total - offloaded (CUDA; on the CPU everything is host memory).
  std::int64_t device_bytes() const { return plan.total() - offloaded; }
};

// The per-device budget of `config` under `layout` (dp_shard_size resolved), as the trainer
// prints it before step 1: the model's plan with, at ZeRO stage > 0, the shard sizes of
// parallel::zero_memory_formula over the dp_shard x sp ranks and its transient buffers added.
RunMemory run_memory(const TrainConfig& config, const model::ModelConfig& model,
                     const parallel::ParallelConfig& layout, parallel::Precision precision);

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
                     std::int64_t budget_bytes, int world_size);
std::string format_fit(const FitAdvice& advice, std::int64_t budget_bytes);

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
std::string info_report(const TrainConfig& options, int world_size, double memory_gib,
                        const std::string& precision);

}  // namespace ulysses::train
