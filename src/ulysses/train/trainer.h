// Trainer: the step loop. Builds the model, data and optimizer from a TrainConfig, prints the
// plan, then for every step: packs the global batch, counts the valid labels N of the whole
// step (all micro-steps) before any backward, runs forward/backward of every sequence with
// gradient scale 1/N, clips, updates, logs, and saves Hugging Face checkpoints.
#pragma once

#include <memory>
#include <vector>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/context.h"
#include "ulysses/data/packer.h"
#include "ulysses/model/decoder.h"
#include "ulysses/model/params.h"
#include "ulysses/parallel/mesh.h"
#include "ulysses/parallel/zero.h"
#include "ulysses/train/checkpoint.h"
#include "ulysses/train/metrics.h"
#include "ulysses/train/optimizer.h"
#include "ulysses/train/schedule.h"
#include "ulysses/train/train_config.h"

namespace ulysses::train {

class Trainer {
 public:
  // Collective over `world` (every rank constructs its Trainer with the same config). The
  // communicator must outlive the trainer. Rank 0 prints, logs and saves.
  Trainer(const TrainConfig& config, comm::Communicator& world);
  // Single process (a self communicator).
  explicit Trainer(const TrainConfig& config);
  ~Trainer();

  // Runs config.max_steps steps; returns the metrics of every step.
  std::vector<StepMetrics> run();
  // One optimizer step (1-based step index for the schedule and logs).
  StepMetrics train_step(std::int64_t step);

  const model::ModelConfig& model_config() const { return model_config_; }
  // This rank's device context (its CUDA stream and resources on a GPU).
  const Context& context() const { return ctx_; }
  const parallel::Mesh& mesh() const { return *mesh_; }
  // Full parameters (collective with ZeRO: gathers the shards on every rank).
  model::ParamBuffers& params() {
    if (zero_) zero_->gather_parameters(params_);
    return params_;
  }
  // The plan printed before step 1.
  std::string plan() const;
  // Training checkpoint of the state after `step` (collective): <output_dir>/checkpoint-<step>
  // with every rank's state, trainer_state.json and the HF weights; then --save-total-limit.
  void save_checkpoint(std::int64_t step);
  // Restores the state of a checkpoint ("latest" or a folder); run() continues after its step.
  void resume(const std::string& spec);

 private:
  // `world` when given, else the owned communicator.
  Trainer(const TrainConfig& config, comm::Communicator* world,
          std::unique_ptr<comm::Communicator> owned);
  void save(const std::filesystem::path& dir);
  TrainingState training_state(std::int64_t step) const;
  const model::ParamBuffers& forward_params() const {
    return compute_params_ ? *compute_params_ : params_;
  }
  std::int64_t global_batch_sequences() const;
  bool is_main() const { return world_.rank() == 0; }

  std::string run_id_;  // TrainingState::run_id of this run
  std::unique_ptr<comm::Communicator> own_world_;  // only for the single-process constructor
  comm::Communicator& world_;
  TrainConfig config_;
  model::ModelConfig model_config_;
  Context ctx_;
  // Several GPUs: the NCCL world the mesh is built on (null on CPU or with one rank). Declared
  // before mesh_, which refers to it.
  std::unique_ptr<comm::Communicator> nccl_world_;
  // f32: the parameters (the fp32 master weights on CUDA). With ZeRO: a host copy, written by
  // gather_parameters (the live state is in zero_).
  model::ParamBuffers params_;
  std::unique_ptr<model::ParamBuffers> grads_;  // f32, without ZeRO
  std::unique_ptr<parallel::ZeroState> zero_;    // ZeRO >= 1: sharded gradients and state
  // bf16 copy used by forward/backward when the compute dtype is not f32 (CUDA) without ZeRO;
  // kept in step with params_ by the optimizer. (With ZeRO the ZeroState holds the bf16
  // parameters.)
  std::unique_ptr<model::ParamBuffers> compute_params_;
  std::unique_ptr<AdamW> optimizer_;  // without ZeRO
  std::int64_t updates_ = 0;          // optimizer updates applied (skipped steps excluded)
  ScheduleConfig schedule_;
  std::unique_ptr<data::DocumentSource> source_;
  std::unique_ptr<data::Packer> packer_;
  std::unique_ptr<parallel::Mesh> mesh_;
  std::unique_ptr<parallel::AttentionStrategy> attention_;
  std::unique_ptr<model::Decoder> decoder_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::int64_t first_step_ = 1;  // > 1 after resuming
};

}  // namespace ulysses::train
