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
  const parallel::Mesh& mesh() const { return *mesh_; }
  model::ParamBuffers& params() { return params_; }
  // The plan printed before step 1.
  std::string plan() const;

 private:
  // `world` when given, else the owned communicator.
  Trainer(const TrainConfig& config, comm::Communicator* world,
          std::unique_ptr<comm::Communicator> owned);
  void save(const std::filesystem::path& dir) const;
  std::int64_t global_batch_sequences() const;
  double sum_over_ranks(double value) const;
  bool is_main() const { return world_.rank() == 0; }

  std::unique_ptr<comm::Communicator> own_world_;  // only for the single-process constructor
  comm::Communicator& world_;
  TrainConfig config_;
  model::ModelConfig model_config_;
  Context ctx_;
  model::ParamBuffers params_;
  model::ParamBuffers grads_;
  AdamW optimizer_;
  ScheduleConfig schedule_;
  std::unique_ptr<data::DocumentSource> source_;
  std::unique_ptr<data::Packer> packer_;
  std::unique_ptr<parallel::Mesh> mesh_;
  std::unique_ptr<parallel::AttentionStrategy> attention_;
  std::unique_ptr<model::Decoder> decoder_;
  std::unique_ptr<MetricsWriter> metrics_;
};

}  // namespace ulysses::train
