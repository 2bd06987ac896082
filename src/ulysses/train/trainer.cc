#include "ulysses/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "ulysses/comm/agree.h"
#include "ulysses/comm/nccl_communicator.h"
#include "ulysses/core/cuda_context.h"
#include "ulysses/core/device_memory.h"
#include "ulysses/core/format.h"
#include "ulysses/core/log.h"
#include "ulysses/core/op_profiler.h"
#include "ulysses/core/process_env.h"
#include "ulysses/io/hf_checkpoint.h"
#include "ulysses/model/flops.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/parallel/attention_strategies.h"
#include "ulysses/parallel/memory_plan.h"
#include "ulysses/train/loss_plot.h"
#include "ulysses/train/output_dir.h"
#include "ulysses/train/run_plan.h"
#include "ulysses/train/run_report.h"

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

// dst (host) = src (device): straight when dst is pinned, else through `bounce`, a pinned f32
// buffer of 64 MiB made on first use (a pageable copy runs at a fraction of the DMA rate).
void copy_to_host(const Tensor& src, Tensor dst, Tensor& bounce) {
  if (dst.pinned() || dst.dtype() != DType::f32) return dst.copy_from(src);
  constexpr std::int64_t kBounce = std::int64_t{1} << 24;  // elements
  if (!bounce.defined()) bounce = Tensor::zeros_pinned({kBounce}, DType::f32);
  if (!bounce.pinned()) return dst.copy_from(src);  // no GPU registration: nothing gained
  for (std::int64_t at = 0; at < src.numel(); at += kBounce) {
    const std::int64_t end = std::min(src.numel(), at + kBounce);
    Tensor part = bounce.rows(0, end - at);
    part.copy_from(src.rows(at, end));
    dst.rows(at, end).copy_from(part);
  }
}

// The context of this rank: CPU, or the CUDA device given by the launcher's local rank.
Context make_context(const std::string& device, int world_size) {
  const bool want_cuda = device == "cuda" || (device == "auto" && cuda_device_count() > 0);
  if (!want_cuda) return make_cpu_context();
  if (!built_with_cuda())
    UL_FAIL("--device ", device,
            ": this build has no CUDA backend (configure with "
            "-DULYSSES_CUDA=on on a machine with nvcc)");
  return make_cuda_context(
      choose_cuda_device(launcher_local_rank(), cuda_device_count(), world_size));
}

// make_context, agreed on by every rank of world: when it fails anywhere, every rank throws
// the failing rank's error, so no rank walks on into a collective alone.
Context make_agreed_context(const std::string& device, comm::Communicator& world) {
  Context ctx;
  comm::run_agreed(world, [&] { ctx = make_context(device, world.size()); });
  return ctx;
}

}  // namespace

Trainer::Trainer(const TrainConfig& config)
    : Trainer(config, nullptr, comm::make_self_communicator()) {}

Trainer::Trainer(const TrainConfig& config, comm::Communicator& world)
    : Trainer(config, &world, nullptr) {}

Trainer::Trainer(const TrainConfig& config, comm::Communicator* world,
                 std::unique_ptr<comm::Communicator> owned)
    : own_world_(std::move(owned)),
      world_(world ? *world : *own_world_),
      config_(resolve_training_length(config, world_.size())),
      model_config_(model::resolve_model_config(config.model)),
      ctx_(make_agreed_context(config.device, world_)),
      save_dtype_(parse_dtype_option(config.save_dtype, "--save-dtype")) {
  const AttnImplementation attn = parse_attn_implementation(config_.attn_implementation);
  if (ctx_.device.is_cpu() &&
      (attn == AttnImplementation::cudnn || attn == AttnImplementation::builtin))
    UL_FAIL("--attn-implementation ", config_.attn_implementation,
            " is a CUDA kernel; on the CPU use auto or blockwise");
  if (ctx_.device.is_cuda() && attn == AttnImplementation::blockwise)
    UL_FAIL(
        "--attn-implementation blockwise is the CPU kernel; on CUDA use auto, cudnn or builtin");
  ctx_.attention_kernel = attn == AttnImplementation::cudnn     ? AttentionKernel::cudnn
                          : attn == AttnImplementation::builtin ? AttentionKernel::builtin
                                                                : AttentionKernel::automatic;
  if (model_config_.sliding_window > 0 && config_.max_seq_length > model_config_.sliding_window)
    UL_FAIL("--model ", config_.model, " uses sliding-window attention (sliding_window ",
            model_config_.sliding_window, ") and --max-seq-length ", config_.max_seq_length,
            " exceeds it; sliding windows are not supported: use --max-seq-length <= ",
            model_config_.sliding_window);
  if (config_.max_seq_length > model_config_.max_position_embeddings && world_.rank() == 0)
    log_warn("--max-seq-length ", config_.max_seq_length, " exceeds max_position_embeddings ",
             model_config_.max_position_embeddings, " of --model ", config_.model,
             ": positions beyond it were never trained (check the rope scaling)");
  const parallel::ParallelConfig layout = parallel::resolve_parallel_config(
      {config_.sp_size, config_.dp_shard_size, config_.dp_replicate_size,
       train::resolved_ring_size(config_)},
      world_.size(), model_config_);

  schedule_ = {parse_schedule_type(config_.lr_scheduler_type), config_.learning_rate,
               config_.warmup_steps, config_.max_steps};
  validate_schedule(schedule_);

  // Text data is tokenized with the model's tokenizer.json (run_plan's data_options, which
  // `ulysses info` uses too).
  source_ = data::open_data(data_options(config_, model_config_.vocab_size));
  data::PackerOptions packing;
  packing.max_seq_length = config_.max_seq_length;
  packing.packing = config_.packing;
  packing.pad_multiple = train::sequence_pad_multiple(config_);
  packer_ = std::make_unique<data::Packer>(*source_, packing);

  // Collective from here on: every rank reaches this point (errors above are the same on all).
  // Several GPUs: the groups are NCCL communicators (host tensors still go through MPI).
  if (ctx_.device.is_cuda() && world_.size() > 1) nccl_world_ = comm::make_nccl_world(world_, ctx_);
  mesh_ = std::make_unique<parallel::Mesh>(nccl_world_ ? *nccl_world_ : world_, layout);
  if (mesh_->config().ring_size > 1) {
    attention_ = parallel::make_ring_attention(mesh_->ulysses_group(), mesh_->ring_group(),
                                               model_config_.num_attention_heads,
                                               model_config_.num_key_value_heads);
  } else if (mesh_->sp_size() > 1) {
    attention_ =
        parallel::make_ulysses_attention(mesh_->sp_group(), model_config_.num_attention_heads,
                                         model_config_.num_key_value_heads, config_.sp_pipeline);
  } else {
    attention_ = parallel::make_local_attention();
  }
  decoder_ = std::make_unique<model::Decoder>(model_config_, *attention_);
  if (config_.offload_activations && !ctx_.device.is_cpu()) {
    // The host budget for --offload-activation-layers -1: this rank's share (ranks on the node,
    // from the launcher) of 90% of the host memory available now, the smallest over the ranks
    // (collective), so every rank resolves the same count. Read once, before anything is pinned.
    const int local_ranks = std::max(1, process_env::launcher().local_size);
    Tensor budget = Tensor::empty({1}, DType::i64);
    budget.data<std::int64_t>()[0] = -(host_available_memory_bytes() / 10 * 9 / local_ranks);
    world_.all_reduce(budget, comm::ReduceOp::max);
    host_budget_bytes_ = -budget.data<std::int64_t>()[0];
  }
  {
    // How many layers offload (as given, or as many as the host budget holds) and, with
    // --recompute-attention-layers auto, how many recompute attention (the fewest that fit the
    // device): resolved once, the same on every rank; the plan uses the resolved counts.
    // With --checkpoint-layers auto, how many layers are checkpointed (the fewest that fit).
    // The budget is the smallest device's over the world (collective), so every rank resolves
    // the same counts even on mixed GPUs (an SP group's ranks must agree on every layer's
    // exchanges).
    Tensor smallest = Tensor::empty({1}, DType::i64);
    smallest.data<std::int64_t>()[0] = -device_plan_budget();
    world_.all_reduce(smallest, comm::ReduceOp::max);
    const ActivationChoice choice =
        resolve_activation_choice(config_, model_config_, mesh_->config(),
                                  -smallest.data<std::int64_t>()[0], host_budget_bytes_);
    if (config_.recompute_attention_layers == kRecomputeAttentionAuto) {
      config_.recompute_attention_layers = choice.recompute_layers;
      recompute_layers_chosen_ = true;
    }
    if (config_.checkpoint_layers == kCheckpointLayersAuto) {
      config_.checkpoint_layers = choice.checkpoint_layers;
      checkpoint_layers_chosen_ = true;
    }
    if (config_.offload_activations && !ctx_.device.is_cpu())
      activation_offload_layers_ = choice.offload_layers;
    // --loss-tile-tokens auto: the largest tile the plan still fits with those choices (the plan
    // resolves the offloaded layer count against the same host budget as the choice above).
    loss_tile_chosen_ = config_.loss_tile_tokens == kLossTileAuto;
    config_.loss_tile_tokens =
        resolve_loss_tile(config_, model_config_, mesh_->config(), ctx_.device.is_cuda(),
                          -smallest.data<std::int64_t>()[0], host_budget_bytes_);
    ctx_.loss_tile_tokens = config_.loss_tile_tokens;
  }
  // The CPU backend's memory is the host's, and so is a GPU rank's offloaded state: a plan that
  // cannot fit stops before allocating.
  comm::run_agreed(world_, [&] {
    check_host_memory();
    check_device_memory();
  });
  if (activation_offload_layers_ > 0) {
    activation_offload_ = parallel::make_activation_offload(ctx_, activation_offload_layers_);
    const std::int64_t T = config_.max_seq_length / config_.sp_size;
    const auto a = static_cast<std::int64_t>(dtype_size(ctx_.compute_dtype));
    comm::run_agreed(world_, [&] {
      for (std::int64_t l = 0; l < activation_offload_layers_; ++l)
        activation_offload_->reserve(l, T * model_config_.hidden_size * a,
                                     recomputes_attention(l) ? 0 : T * model_config_.q_dim() * a);
    });
  }
  // Allocating the state and reading or drawing the weights can fail on some ranks only (a
  // missing shard file, memory): every rank learns it before the next collective.
  comm::run_agreed(world_, [&] {
    const auto start = std::chrono::steady_clock::now();
    zero_ = std::make_unique<parallel::ZeroState>(ctx_, model_config_, *mesh_, zero_config(config_),
                                                  adamw_config(config_));
    const auto allocated = std::chrono::steady_clock::now();
    // Each rank writes only what it keeps, straight into the ZeroState's buffers (on the
    // device, or in pinned host memory when offloaded): read from the HF files' ranges, or
    // drawn by the counter-based generator where the buffer lives (the same values as
    // model::init_weights on any device).
    if (io::has_hf_weights(config_.model)) {
      const io::HfWeightReader reader(config_.model, model_config_);
      zero_->set_parameters([&](std::size_t group, std::int64_t lo, Tensor out) {
        reader.read_group_range(group, lo, out);
      });
      setup_times_.weights_source = "read from " + config_.model;
    } else {
      const model::ParamLayout layout(model_config_);
      const auto init_std = static_cast<float>(config_.initializer_range);
      Tensor bounce;  // pinned, for copies into pageable host memory (made on first use)
      zero_->set_parameters([&](std::size_t group, std::int64_t lo, Tensor out) {
        const model::ParamGroup& spec = layout.groups()[group];
        if (out.device() == ctx_.device)
          return model::init_group_range(ctx_, spec, out, lo, config_.seed, init_std);
        // Host memory (offloaded) of a GPU rank: drawn on the GPU, one group at a time, and
        // copied; the values are the host generator's bit for bit.
        Tensor drawn = Tensor::empty(out.shape(), out.dtype(), ctx_.device);
        model::init_group_range(ctx_, spec, drawn, lo, config_.seed, init_std);
        copy_to_host(drawn, out, bounce);
      });
      setup_times_.weights_source = "drawn (seed " + std::to_string(config_.seed) + ")";
    }
    synchronize(ctx_);  // the device draws are done: the time is the setup's
    const auto end = std::chrono::steady_clock::now();
    setup_times_.state_s = std::chrono::duration<double>(allocated - start).count();
    setup_times_.weights_s = std::chrono::duration<double>(end - allocated).count();
  });
  run_id_ = make_run_id(world_);  // a resume takes the saved run's id instead
  if (!config_.resume_from_checkpoint.empty()) resume(config_.resume_from_checkpoint);
  if (!config_.eval_data.empty())
    evaluator_ = std::make_unique<Evaluator>(eval_options(config_, model_config_.vocab_size));
  // A resumed run appends to the metrics of the run it continues (cut back to its step).
  metrics_ = std::make_unique<MetricsWriter>(is_main() ? config_.output_dir : std::string(),
                                             first_step_ - 1);
}

TrainingState Trainer::training_state(std::int64_t step) const {
  TrainingState state;
  state.step = step;
  state.data_position = packer_->position();
  state.seed = config_.seed;
  state.world_size = world_.size();
  state.sp_size = mesh_->config().sp_size;
  state.dp_shard_size = mesh_->config().dp_shard_size;
  state.dp_replicate_size = mesh_->config().dp_replicate_size;
  state.zero_stage = config_.zero_stage;
  state.model_fingerprint = model_fingerprint(model_config_);
  state.run_id = run_id_;
  // The settings a resume compares (check_resume_settings): those of kDataOrderSettings decide
  // the data stream, the others only how it is trained on.
  state.extra = {{"lr_scheduler_type", config_.lr_scheduler_type},
                 {"learning_rate", config_.learning_rate},
                 {"max_steps", config_.max_steps},
                 {"warmup_steps", config_.warmup_steps},
                 {"weight_decay", config_.weight_decay},
                 {"adam_beta1", config_.adam_beta1},
                 {"adam_beta2", config_.adam_beta2},
                 {"adam_epsilon", config_.adam_epsilon},
                 {"max_grad_norm", config_.max_grad_norm},
                 {"grad_reduce_dtype", config_.grad_reduce_dtype},
                 {"data", config_.data},
                 {"max_seq_length", config_.max_seq_length},
                 {"packing", config_.packing},
                 {"per_device_train_batch_size", config_.per_device_train_batch_size},
                 {"gradient_accumulation_steps", config_.gradient_accumulation_steps},
                 {"copy_min_length", config_.copy_min_length},
                 {"copy_max_length", config_.copy_max_length},
                 {"updates", updates_}};
  return state;
}

model::ParamBuffers& Trainer::params() {
  if (!host_params_)
    host_params_ = std::make_unique<model::ParamBuffers>(model_config_, Device::cpu());
  zero_->gather_parameters(*host_params_);
  return *host_params_;
}

void Trainer::save_checkpoint(std::int64_t step) {
  // Each rank writes its state: the whole (identical) state at stage 0, its shards with ZeRO.
  const std::vector<std::pair<std::string, Tensor>> tensors = zero_->state_tensors();
  const model::ParamBuffers& full = params();  // collective: the HF weights below need them
  const auto dir = save_training_checkpoint(
      world_, config_.output_dir, training_state(step), tensors,
      [&](const std::filesystem::path& tmp) {
        io::save_hf_checkpoint(tmp, full, save_dtype_, io::kDefaultMaxShardBytes, config_.model);
      });
  rotate_checkpoints(world_, config_.output_dir, config_.save_total_limit, run_id_);
  if (!config_.quiet && is_main()) std::printf("saved %s\n", dir.string().c_str());
}

void Trainer::resume(const std::string& spec) {
  const TrainingState expected = training_state(0);
  const auto dir = resolve_checkpoint(world_, config_.output_dir, spec, &expected);
  const LoadedCheckpoint loaded = load_training_checkpoint(world_, dir, expected);
  if (!loaded.state.run_id.empty()) run_id_ = loaded.state.run_id;
  const std::string changed =
      check_resume_settings(loaded.state, expected, config_.ignore_data_order_change, dir.string());
  if (!changed.empty() && is_main()) log_warn(changed);
  zero_->load_state_tensors(loaded.tensors);
  updates_ = loaded.state.extra.value("updates", loaded.state.step);
  packer_->set_position(loaded.state.data_position);
  first_step_ = loaded.state.step + 1;
  if (!config_.quiet && is_main())
    std::printf("resumed from %s at step %lld\n", dir.string().c_str(),
                static_cast<long long>(loaded.state.step));
}

Trainer::~Trainer() = default;

bool Trainer::recomputes_attention(std::int64_t layer) const {
  return config_.gradient_checkpointing && config_.recompute_attention &&
         (config_.recompute_attention_layers < 0 || layer < config_.recompute_attention_layers);
}

double Trainer::epoch() const {
  const std::int64_t per_epoch = source_->documents_per_epoch();
  return per_epoch > 0 ? static_cast<double>(packer_->position()) / static_cast<double>(per_epoch)
                       : -1.0;
}

std::int64_t Trainer::global_batch_sequences() const {
  return config_.per_device_train_batch_size * mesh_->dp_size() *
         config_.gradient_accumulation_steps;
}

StepMetrics Trainer::train_step(std::int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  StepMetrics m;
  m.step = step;
  m.max_steps = config_.max_steps;

  // Every rank packs the whole global batch of the step (a function of the data position
  // alone), then takes its sequences: micro-step a, data-parallel group d, sequence b of
  // B = per_device_train_batch_size is sequence (a * D + d) * B + b. Its SP rank takes 1/P of
  // each sequence's tokens.
  std::vector<data::PackedSequence> batch;
  double flops = 0;
  for (std::int64_t i = 0; i < global_batch_sequences(); ++i) {
    batch.push_back(packer_->next());
    m.tokens += batch.back().length();
    m.padding_tokens += batch.back().padding_tokens;
    flops += model::sequence_flops(model_config_, batch.back().cu_seqlens);
  }
  m.epoch = epoch();
  const std::int64_t B = config_.per_device_train_batch_size, D = mesh_->dp_size();
  const std::int64_t P = mesh_->sp_size(), r = mesh_->sp_rank();
  std::vector<data::SequenceShard> shards;
  std::int64_t local_labels = 0;
  for (std::int64_t a = 0; a < config_.gradient_accumulation_steps; ++a) {
    for (std::int64_t b = 0; b < B; ++b) {
      const auto& sequence = batch[static_cast<std::size_t>((a * D + mesh_->dp_index()) * B + b)];
      // Ring and hybrid: the rank's zigzag chunks; Ulysses: its contiguous 1/P.
      const std::vector<data::TokenRange> ranges =
          data::sp_shard_ranges(sequence.length(), r, P, mesh_->config().ring_size);
      shards.push_back(data::to_device(data::make_shard(sequence, ranges), ctx_.device));
      local_labels += data::valid_labels(sequence, ranges);
    }
  }
  // N: valid labels of the whole step over every rank, known before any backward.
  Tensor count = Tensor::empty({1}, DType::i64);
  count.data<std::int64_t>()[0] = local_labels;
  world_.all_reduce(count, comm::ReduceOp::sum);
  m.valid_labels = count.data<std::int64_t>()[0];
  m.learning_rate = learning_rate_at(schedule_, step - 1);

  if (m.valid_labels == 0) {
    if (is_main())
      log_warn("step ", step, ": the global batch has no valid labels; step skipped (no update)");
    m.skipped = true;
  } else {
    const float grad_scale = static_cast<float>(1.0 / static_cast<double>(m.valid_labels));
    model::StepOptions options;
    options.gradient_checkpointing = config_.gradient_checkpointing;
    options.recompute_attention = config_.recompute_attention;
    options.recompute_attention_layers = config_.recompute_attention_layers;
    options.checkpoint_layers = config_.checkpoint_layers;
    options.mlp_tile_tokens = effective_mlp_tile(config_);
    options.activation_store = activation_offload_.get();
    ++updates_;
    const auto lr = static_cast<float>(m.learning_rate);
    // Ranks whose shards hold no valid label still run: the all-to-alls need every SP rank.
    // Every micro-batch is queued before a loss is read: the forward and backward never wait
    // for the device (the first loss_sum() is the step's first host synchronization).
    zero_->begin_step();
    std::vector<ops::LossSum> losses;
    for (const auto& shard : shards)
      losses.push_back(decoder_->forward_backward(ctx_, *zero_, shard, grad_scale, options));
    double loss_sum = 0;
    for (const ops::LossSum& loss : losses) loss_sum += loss.loss_sum();
    m.loss = comm::sum_in_rank_order(world_, loss_sum) / static_cast<double>(m.valid_labels);
    const bool finite_loss = std::isfinite(m.loss);
    {
      // The reduction, norm, clip and AdamW (the host's with --offload-optimizer) as one phase
      // of the profile: with offload, the cost the GPU waits for.
      const PhaseScope phase(ctx_, "optimizer");
      m.grad_norm = zero_->finish_step(ctx_, updates_, lr, config_.max_grad_norm, finite_loss);
    }
    // A step whose loss or gradient norm is not finite changes nothing (every rank sees the
    // same global values); too many in a row stop the run before anything is saved.
    if (!finite_loss || !std::isfinite(m.grad_norm)) {
      m.skipped = true;
      --updates_;
      ++consecutive_skips_;
      if (is_main())
        log_warn("step ", step, ": loss ", m.loss, ", grad norm ", m.grad_norm,
                 " not finite; step skipped (no update), ", consecutive_skips_, " in a row");
      if (consecutive_skips_ >= config_.max_skipped_steps)
        UL_FAIL("step ", step, ": ", consecutive_skips_,
                " consecutive steps had a non-finite loss or gradient norm (--max-skipped-steps ",
                config_.max_skipped_steps,
                "); the run diverged: lower --learning-rate, check the "
                "data and weights, or resume from an earlier checkpoint");
    } else {
      consecutive_skips_ = 0;
    }
  }

  synchronize(ctx_);
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  m.tokens_per_s = static_cast<double>(m.tokens) / m.seconds;
  m.tflops_per_device = flops / world_.size() / m.seconds / 1e12;
  m.peak_mem_bytes =
      ctx_.device.is_cpu()
          ? host_peak_memory_bytes()
          : static_cast<std::int64_t>(device_memory_stats(ctx_.device.index).peak_in_use);
  return m;
}

void Trainer::save(const std::filesystem::path& dir) {
  const model::ParamBuffers& full = params();  // collective
  if (!is_main()) return;
  io::save_hf_checkpoint(dir, full, save_dtype_, io::kDefaultMaxShardBytes, config_.model);
  if (!config_.quiet) std::printf("saved %s\n", dir.string().c_str());
}

EvalMetrics Trainer::evaluate(std::int64_t step) {
  UL_CHECK(evaluator_, "Trainer::evaluate needs --eval-data");
  eval_history_.push_back(evaluator_->evaluate(ctx_, *decoder_, *zero_, *mesh_, world_, step));
  metrics_->write(eval_history_.back(), epoch());
  if (!config_.quiet && is_main()) std::printf("%s\n", eval_line(eval_history_.back()).c_str());
  return eval_history_.back();
}

std::vector<StepMetrics> Trainer::run() {
  if (!config_.quiet && is_main()) std::printf("%s", plan().c_str());
  std::vector<StepMetrics> history;
  const auto evaluate_after = [&](std::int64_t step) {
    if (evaluator_ && (eval_history_.empty() || eval_history_.back().step != step)) evaluate(step);
  };
  RunProgress progress(first_step_, config_.max_steps);
  for (std::int64_t step = first_step_; step <= config_.max_steps; ++step) {
    history.push_back(train_step(step));
    progress.add(history.back());
    const StepMetrics& m = history.back();
    if (step == 1 || step % config_.logging_steps == 0 || step == config_.max_steps) {
      metrics_->write(m);
      if (!config_.quiet && is_main()) {
        std::printf("%s\n", progress_line(m).c_str());
        std::fflush(stdout);
      }
    }
    if (config_.eval_steps > 0 && step % config_.eval_steps == 0) evaluate_after(step);
    if (config_.save_steps > 0 && step % config_.save_steps == 0 && !config_.output_dir.empty())
      save_checkpoint(step);
  }
  evaluate_after(config_.max_steps);
  if (!config_.output_dir.empty()) save(config_.output_dir);
  report(progress);
  return history;
}

void Trainer::report(const RunProgress& progress) {
  RunSummary summary = summarize(progress, eval_history_);
  Tensor peak = Tensor::empty({1}, DType::i64);  // the largest peak of any rank
  peak.data<std::int64_t>()[0] = summary.peak_mem_bytes;
  world_.all_reduce(peak, comm::ReduceOp::max);
  summary.peak_mem_bytes = peak.data<std::int64_t>()[0];
  if (!is_main()) return;
  if (!config_.quiet) std::printf("%s\n", format_summary(summary).c_str());
  if (config_.output_dir.empty()) return;
  write_train_results(config_.output_dir, summary);
  try {
    const auto plot = write_loss_plot(config_.output_dir);
    if (!config_.quiet) std::printf("loss curve: %s\n", plot.string().c_str());
  } catch (const Error& e) {
    log_warn("no loss curve: ", e.what());
  }
}

}  // namespace ulysses::train
