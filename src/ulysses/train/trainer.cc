#include "ulysses/train/trainer.h"

#include <chrono>
#include <cstdio>
#include <sstream>

#include "ulysses/core/log.h"
#include "ulysses/io/hf_checkpoint.h"
#include "ulysses/model/memory_plan.h"

namespace ulysses::train {

namespace {

ops::AdamWConfig adamw_config(const TrainConfig& c) {
  ops::AdamWConfig a;
  a.lr = static_cast<float>(c.learning_rate);
  a.beta1 = static_cast<float>(c.adam_beta1);
  a.beta2 = static_cast<float>(c.adam_beta2);
  a.eps = static_cast<float>(c.adam_epsilon);
  a.weight_decay = static_cast<float>(c.weight_decay);
  return a;
}

Device resolve_device(const std::string& device) {
  if (device == "cpu" || device == "auto") return Device::cpu();
  UL_FAIL("--device ", device,
          ": the CUDA backend is not available yet; use --device cpu (or auto)");
}

}  // namespace

Trainer::Trainer(const TrainConfig& config)
    : config_((validate(config), config)),
      model_config_(model::resolve_model_config(config.model)),
      params_(model_config_, resolve_device(config.device)),
      grads_(model_config_, params_.flat().front().device()),
      optimizer_(model_config_, adamw_config(config), params_.flat().front().device()) {
  ctx_.device = params_.flat().front().device();
  ctx_.loss_tile_tokens = config_.loss_tile_tokens;
  if (model_config_.sliding_window > 0 && config_.max_seq_length > model_config_.sliding_window)
    UL_FAIL("--model ", config_.model, " uses sliding-window attention (sliding_window ",
            model_config_.sliding_window, ") and --max-seq-length ", config_.max_seq_length,
            " exceeds it; sliding windows are not supported: use --max-seq-length <= ",
            model_config_.sliding_window);

  if (io::has_hf_weights(config_.model)) {
    io::load_hf_weights(config_.model, params_);
  } else {
    model::init_weights(params_, config_.seed, static_cast<float>(config_.initializer_range));
  }

  schedule_ = {config_.lr_scheduler_type, config_.learning_rate, config_.warmup_steps,
               config_.max_steps};
  validate_schedule(schedule_);

  if (config_.data == "synthetic-copy") {
    data::CopyTaskOptions copy;
    copy.vocab_size = model_config_.vocab_size;
    copy.min_length = config_.copy_min_length;
    copy.max_length = config_.copy_max_length;
    copy.seed = config_.seed;
    source_ = data::make_copy_task(copy);
  } else {
    UL_FAIL("--data ", config_.data, ": unknown data source (available: synthetic-copy)");
  }
  data::PackerOptions packing;
  packing.max_seq_length = config_.max_seq_length;
  packing.packing = config_.packing;
  packing.pad_multiple = config_.sp_size;
  packer_ = std::make_unique<data::Packer>(*source_, packing);

  attention_ = parallel::make_local_attention();
  decoder_ = std::make_unique<model::Decoder>(model_config_, *attention_);
  metrics_ = std::make_unique<MetricsWriter>(config_.output_dir);
}

Trainer::~Trainer() = default;

std::string Trainer::plan() const {
  const model::ModelConfig& c = model_config_;
  std::ostringstream out;
  out << "model: " << config_.model << " (" << c.model_type << ", " << c.num_hidden_layers
      << " layers, hidden " << c.hidden_size << ", heads " << c.num_attention_heads << "/"
      << c.num_key_value_heads << " kv, head_dim " << c.head_dim << ", vocab " << c.vocab_size
      << ", " << model::parameter_count(c) << " parameters)\n";
  out << "mesh: world 1 = dp_replicate 1 x dp_shard 1 x sp 1 (rank 0 holds everything)\n";
  out << "data: " << source_->describe() << ", " << (config_.packing ? "packed" : "unpacked")
      << " into sequences of " << config_.max_seq_length << " tokens\n";
  out << "batch: " << config_.per_device_train_batch_size << " sequences x "
      << config_.gradient_accumulation_steps << " accumulation steps = "
      << config_.per_device_train_batch_size * config_.gradient_accumulation_steps
      << " sequences per optimizer step\n";
  model::MemoryPlanInput in;
  in.tokens_per_device = config_.max_seq_length;
  in.gradient_checkpointing = config_.gradient_checkpointing;
  in.loss_tile_tokens = config_.loss_tile_tokens;
  out << model::format_memory_plan(model::plan_memory(c, in), in);
  return out.str();
}

StepMetrics Trainer::train_step(std::int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  StepMetrics m;
  m.step = step;
  m.max_steps = config_.max_steps;

  // The whole global batch of the step is packed first, so N is known before any backward.
  std::vector<data::PackedSequence> sequences;
  const std::int64_t count = config_.per_device_train_batch_size * config_.gradient_accumulation_steps;
  double flops = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    sequences.push_back(packer_->next());
    m.tokens += sequences.back().length();
    m.padding_tokens += sequences.back().padding_tokens;
    m.valid_labels += sequences.back().valid_labels();
    flops += model::sequence_flops(model_config_, sequences.back().cu_seqlens);
  }
  m.learning_rate = learning_rate_at(schedule_, step - 1);

  if (m.valid_labels == 0) {
    log_warn("step ", step, ": the global batch has no valid labels; step skipped (no update)");
    m.skipped = true;
  } else {
    grads_.zero();
    const model::ModelWeights weights = params_.weights();
    const model::ModelWeights grads = grads_.weights();
    const float grad_scale = static_cast<float>(1.0 / static_cast<double>(m.valid_labels));
    model::StepOptions options;
    options.gradient_checkpointing = config_.gradient_checkpointing;
    double loss_sum = 0;
    for (const auto& sequence : sequences) {
      const auto shard = data::make_full_shard(sequence);
      loss_sum += decoder_->forward_backward(ctx_, weights, &grads, shard,
                                             grad_scale, options)
                      .loss_sum;
    }
    m.loss = loss_sum / static_cast<double>(m.valid_labels);
    m.grad_norm = gradient_norm(ctx_, grads_);
    clip_gradients(ctx_, grads_, m.grad_norm, config_.max_grad_norm);
    optimizer_.step(ctx_, params_, grads_, static_cast<float>(m.learning_rate));
  }

  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  m.tokens_per_s = static_cast<double>(m.tokens) / m.seconds;
  m.tflops_per_device = flops / m.seconds / 1e12;
  m.peak_mem_bytes = host_peak_memory_bytes();
  return m;
}

void Trainer::save(const std::filesystem::path& dir) const {
  const DType dtype = config_.save_dtype == "bfloat16" ? DType::bf16 : DType::f32;
  io::save_hf_checkpoint(dir, params_, dtype);
  if (!config_.quiet) std::printf("saved %s\n", dir.string().c_str());
}

std::vector<StepMetrics> Trainer::run() {
  if (!config_.quiet) std::printf("%s", plan().c_str());
  std::vector<StepMetrics> history;
  for (std::int64_t step = 1; step <= config_.max_steps; ++step) {
    history.push_back(train_step(step));
    const StepMetrics& m = history.back();
    if (step == 1 || step % config_.logging_steps == 0 || step == config_.max_steps) {
      metrics_->write(m);
      if (!config_.quiet) {
        std::printf("%s\n", progress_line(m).c_str());
        std::fflush(stdout);
      }
    }
    if (config_.save_steps > 0 && step % config_.save_steps == 0 && step != config_.max_steps &&
        !config_.output_dir.empty())
      save(std::filesystem::path(config_.output_dir) / ("checkpoint-" + std::to_string(step)));
  }
  if (!config_.output_dir.empty()) save(config_.output_dir);
  return history;
}

}  // namespace ulysses::train
