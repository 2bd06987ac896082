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
#include "ulysses/model/attention_strategy.h"
#include "ulysses/model/decoder.h"
#include "ulysses/model/params.h"
#include "ulysses/parallel/activation_offload.h"
#include "ulysses/parallel/memory_plan.h"
#include "ulysses/parallel/mesh.h"
#include "ulysses/parallel/zero.h"
#include "ulysses/train/checkpoint.h"
#include "ulysses/train/evaluator.h"
#include "ulysses/train/metrics.h"
#include "ulysses/train/run_report.h"
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

  // Runs config.max_steps steps, evaluating every --eval-steps and at the end when there is
  // --eval-data; returns the metrics of every step.
  std::vector<StepMetrics> run();
  // Loss and perplexity over the whole --eval-data with the current weights (collective; Error
  // when the config has no eval data). Logged and written to metrics.jsonl as after `step`.
  EvalMetrics evaluate(std::int64_t step);
  bool has_eval_data() const { return evaluator_ != nullptr; }
  // Every evaluation run() made, in order.
  const std::vector<EvalMetrics>& eval_history() const { return eval_history_; }
  // One optimizer step (1-based step index for the schedule and logs).
  StepMetrics train_step(std::int64_t step);

  const model::ModelConfig& model_config() const { return model_config_; }
  // The options as the run resolved them (the `auto` counts chosen by the memory plan).
  const TrainConfig& config() const { return config_; }
  // This rank's device context (its CUDA stream and resources on a GPU).
  const Context& context() const { return ctx_; }
  // Times the ops of the following steps into `profiler` (core/op_profiler.h); null stops it.
  // Ops that run on contexts copied before this call (a ZeRO state's optimizer) are not timed.
  void set_profiler(std::shared_ptr<OpProfiler> profiler) { ctx_.profiler = std::move(profiler); }
  const parallel::Mesh& mesh() const { return *mesh_; }
  // Full f32 parameters (the master weights on CUDA) in host memory. Collective: gathers the
  // shards (ZeRO) on every rank; the buffer is allocated on the first call and kept.
  model::ParamBuffers& params();
  // The plan printed before step 1 (its last line: the setup times).
  std::string plan() const;
  // Its memory part: device bytes (ZeRO shards, transients, kept activations, one layer's
  // working set) and host bytes (offloaded states, pinned activations).
  parallel::MemoryPlan memory_plan() const;
  parallel::MemoryPlanInput memory_plan_input() const;
  // What the constructor spent on this rank: allocating the training state (pinned host memory
  // included) and writing this rank's initial weights (drawn or read; device work waited for).
  struct SetupTimes {
    double state_s = 0, weights_s = 0;
    std::string weights_source;  // "drawn (seed N)" or "read from DIR"
  };
  const SetupTimes& setup_times() const { return setup_times_; }
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
  // After the loop (collective: the peak memory of every rank): the end-of-run summary on
  // rank 0, train_results.json and loss.svg in the output dir.
  void report(const RunProgress& progress);
  TrainingState training_state(std::int64_t step) const;
  // CPU: Error naming the options when the plan exceeds the host's available memory (CUDA:
  // check_offload_host_memory).
  void check_host_memory() const;
  // CUDA with offload: Error naming the flags when the offloaded state and its pinned staging
  // (per rank, times the ranks of this node) exceed the host's available memory.
  void check_offload_host_memory() const;
  // CUDA: Error naming the options that would fit when the memory plan exceeds the device
  // (unless --ignore-memory-plan).
  void check_device_memory() const;
  // Device bytes the memory plan may use (the GPU's memory less a reserve; 0 on the CPU).
  std::int64_t device_plan_budget() const;
  std::int64_t global_batch_sequences() const;
  // Whether checkpointing recomputes layer `layer`'s attention (--recompute-attention[-layers]).
  bool recomputes_attention(std::int64_t layer) const;
  // Epochs of the training data consumed so far (< 0 for an endless source).
  double epoch() const;
  bool is_main() const { return world_.rank() == 0; }

  std::string run_id_;                             // TrainingState::run_id of this run
  std::unique_ptr<comm::Communicator> own_world_;  // only for the single-process constructor
  comm::Communicator& world_;
  TrainConfig config_;
  model::ModelConfig model_config_;
  Context ctx_;
  // Several GPUs: the NCCL world the mesh is built on (null on CPU or with one rank). Declared
  // before mesh_, which refers to it.
  std::unique_ptr<comm::Communicator> nccl_world_;
  // The training state, every ZeRO stage (stage 0: replicated, all-reduced gradients): the
  // parameters the decoder reads, the gradients, the fp32 master weights and AdamW moments.
  std::unique_ptr<parallel::ZeroState> zero_;
  // --offload-activations on CUDA (null otherwise): reused by every step.
  std::unique_ptr<parallel::ActivationOffload> activation_offload_;
  std::int64_t activation_offload_layers_ = 0;  // resolved once, at construction
  std::int64_t host_budget_bytes_ = 0;    // with --offload-activations on CUDA: per rank, 0 unknown
  bool recompute_layers_chosen_ = false;  // --recompute-attention-layers auto was resolved
  bool checkpoint_layers_chosen_ = false;  // --checkpoint-layers auto was resolved
  bool loss_tile_chosen_ = false;          // --loss-tile-tokens auto was resolved
  // f32 host copy of the full parameters for params() (null until asked for).
  std::unique_ptr<model::ParamBuffers> host_params_;
  DType save_dtype_ = DType::f32;
  SetupTimes setup_times_;
  std::int64_t updates_ = 0;            // optimizer updates applied (skipped steps excluded)
  std::int64_t consecutive_skips_ = 0;  // steps in a row skipped for non-finite values
  ScheduleConfig schedule_;
  std::unique_ptr<data::DocumentSource> source_;
  std::unique_ptr<data::Packer> packer_;
  std::unique_ptr<parallel::Mesh> mesh_;
  std::unique_ptr<model::AttentionStrategy> attention_;
  std::unique_ptr<model::Decoder> decoder_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<Evaluator> evaluator_;  // null without --eval-data
  std::vector<EvalMetrics> eval_history_;
  std::int64_t first_step_ = 1;  // > 1 after resuming
};

}  // namespace ulysses::train
