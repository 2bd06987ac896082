#include "ulysses/train/run_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <limits>
#include <sstream>

#include "ulysses/core/error.h"
#include "ulysses/core/format.h"
#include "ulysses/data/packer.h"
#include "ulysses/data/source.h"
#include "ulysses/model/flops.h"
#include "ulysses/parallel/zero.h"

namespace ulysses::train {

namespace {

std::int64_t global_batch(const TrainConfig& c, const parallel::ParallelConfig& layout) {
  return c.per_device_train_batch_size * layout.dp_shard_size * layout.dp_replicate_size *
         c.gradient_accumulation_steps;
}

// printf into a string.
void appendf(std::string& out, const char* format, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string& out, const char* format, ...) {
  char buf[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  out += buf;
}

// What an automatic choice may plan on a device of device_bytes: 97% of it, headroom for the
// plan's error.
std::int64_t auto_choice_budget(std::int64_t device_bytes) { return device_bytes / 100 * 97; }

}  // namespace

data::DataOptions data_options(const TrainConfig& c, std::int64_t vocab_size) {
  data::DataOptions d;
  d.data = c.data;
  d.tokenizer = c.model;
  d.max_seq_length = c.max_seq_length;
  d.long_documents = c.long_documents;
  d.data_cache_dir = c.data_cache_dir;
  d.vocab_size = vocab_size;
  d.seed = c.seed;
  d.copy_min_length = c.copy_min_length;
  d.copy_max_length = c.copy_max_length;
  return d;
}

parallel::MemoryPlanInput memory_plan_input(const TrainConfig& c,
                                            const parallel::ParallelConfig& layout,
                                            parallel::Precision precision,
                                            std::int64_t host_budget_bytes) {
  parallel::MemoryPlanInput in;
  in.tokens_per_device = c.max_seq_length / c.sp_size;
  in.gradient_checkpointing = c.gradient_checkpointing;
  in.recompute_attention = c.recompute_attention;
  in.recompute_attention_layers = c.recompute_attention_layers;
  in.checkpoint_layers = c.checkpoint_layers == kCheckpointLayersAuto ? -1 : c.checkpoint_layers;
  in.loss_tile_tokens =
      c.loss_tile_tokens == kLossTileAuto ? kLossTileTokensFallback : c.loss_tile_tokens;
  in.mlp_tile_tokens = effective_mlp_tile(c);
  in.sp_size = c.sp_size;
  in.ring_size = std::max<std::int64_t>(1, layout.ring_size);
  in.precision = precision;
  in.zero_stage = static_cast<int>(c.zero_stage);
  in.zero_group = static_cast<int>(layout.dp_shard_size * layout.sp_size);
  in.offload_optimizer = c.offload_optimizer;
  in.offload_params = c.offload_params;
  in.offload_gradients = c.offload_gradients;
  if (c.offload_activations && precision == parallel::Precision::bf16_mixed) {
    in.offload_activation_layers = c.offload_activation_layers;
    in.host_budget_bytes = host_budget_bytes;
  }
  return in;
}

RunMemory run_memory(const TrainConfig& c, const model::ModelConfig& model,
                     const parallel::ParallelConfig& layout, parallel::Precision precision,
                     std::int64_t host_budget_bytes) {
  RunMemory r;
  r.input = memory_plan_input(c, layout, precision, host_budget_bytes);
  r.plan = parallel::plan_memory(model, r.input);
  return r;
}

FitAdvice advise_fit(const TrainConfig& c, const model::ModelConfig& model,
                     const parallel::ParallelConfig& layout, parallel::Precision precision,
                     std::int64_t budget, int world_size, std::int64_t host_budget) {
  // Device bytes; a plan whose host side exceeds a known host budget counts as not fitting.
  const auto device_bytes = [&](const TrainConfig& t, const parallel::ParallelConfig& l) {
    const RunMemory m = run_memory(t, model, l, precision, host_budget);
    if (host_budget > 0 && m.host_bytes() > host_budget)
      return std::numeric_limits<std::int64_t>::max();
    return m.device_bytes();
  };
  const bool bf16 = precision == parallel::Precision::bf16_mixed;
  FitAdvice a;
  a.device_bytes = run_memory(c, model, layout, precision, host_budget).device_bytes();
  a.fits = device_bytes(c, layout) <= budget;
  // Largest sequence: binary search over tokens per device (the plan grows with them).
  std::int64_t lo = 0, hi = std::int64_t{1} << 26;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi + 1) / 2;
    TrainConfig t = c;
    t.max_seq_length = mid * c.sp_size;
    if (device_bytes(t, layout) <= budget)
      lo = mid;
    else
      hi = mid - 1;
  }
  a.max_seq_length_that_fits = lo * c.sp_size;
  if (a.fits) return a;
  // Single changes, each with the bytes it needs per device; only those that fit are listed.
  const auto consider = [&](const std::string& change, const TrainConfig& t,
                            const parallel::ParallelConfig& l) {
    const std::int64_t bytes = device_bytes(t, l);
    if (bytes <= budget) a.changes.push_back(change + " (" + format_bytes(bytes) + ")");
  };
  if (!c.gradient_checkpointing) {
    TrainConfig t = c;
    t.gradient_checkpointing = true;
    consider("--gradient-checkpointing", t, layout);
  }
  // --checkpoint-layers N: the fewest more checkpointed layers that fit.
  const std::int64_t L = model.num_hidden_layers;
  const bool some_whole =
      c.gradient_checkpointing && c.checkpoint_layers >= 0 && c.checkpoint_layers < L;
  if (some_whole) {
    for (std::int64_t n = c.checkpoint_layers + 1; n <= L; ++n) {
      TrainConfig t = c;
      t.checkpoint_layers = n < L ? n : -1;
      if (device_bytes(t, layout) > budget) continue;
      consider("--checkpoint-layers " + std::to_string(t.checkpoint_layers), t, layout);
      break;
    }
  }
  if (c.zero_stage < 3 && layout.dp_shard_size * layout.sp_size > 1) {
    TrainConfig t = c;
    t.zero_stage = 3;
    consider("--zero-stage 3", t, layout);
    t.gradient_checkpointing = true;
    if (!c.gradient_checkpointing) consider("--zero-stage 3 --gradient-checkpointing", t, layout);
  }
  if (!c.offload_optimizer || !c.offload_params) {
    TrainConfig t = c;
    t.zero_stage = 3;
    t.offload_optimizer = t.offload_params = true;
    t.gradient_checkpointing = true;
    consider("--zero-stage 3 --offload-optimizer --offload-params --gradient-checkpointing", t,
             layout);
  }
  // The gradient shards too (a GPU feature: on the CPU nothing is on a device).
  if (!c.offload_gradients && bf16 && layout.dp_replicate_size == 1) {
    TrainConfig t = c;
    t.zero_stage = std::max<std::int64_t>(c.zero_stage, 2);
    t.offload_optimizer = t.offload_gradients = true;
    t.gradient_checkpointing = true;
    // Only the flags that change.
    std::string change = c.zero_stage >= 2 ? "" : "--zero-stage 2 ";
    if (!c.offload_optimizer) change += "--offload-optimizer ";
    change += "--offload-gradients";
    if (!c.gradient_checkpointing) change += " --gradient-checkpointing";
    consider(change, t, layout);
  }
  // Less kept per layer (CUDA precision: activation offload is a GPU feature).
  if (!c.recompute_attention || (!c.offload_activations && bf16)) {
    TrainConfig t = c;
    t.gradient_checkpointing = true;
    // Recompute and offload checkpoint every layer.
    t.checkpoint_layers = -1;
    const std::string ckpt = c.gradient_checkpointing
                                 ? (c.checkpoint_layers != -1 ? " --checkpoint-layers -1" : "")
                                 : " --gradient-checkpointing";
    if (!c.recompute_attention) {
      t.recompute_attention = true;
      consider("--recompute-attention" + ckpt, t, layout);
    }
    if (!c.offload_activations && bf16) {
      t.offload_activations = true;
      consider((c.recompute_attention ? "--offload-activations"
                                      : "--recompute-attention --offload-activations") +
                   ckpt,
               t, layout);
    }
  }
  // More ranks per sequence (the heads must split): the same sequence, fewer tokens per device.
  for (std::int64_t sp = c.sp_size * 2; sp <= model.num_attention_heads; sp *= 2) {
    if (model.num_attention_heads % sp != 0 || c.max_seq_length % sp != 0) continue;
    TrainConfig t = c;
    t.sp_size = sp;
    parallel::ParallelConfig l = layout;
    l.sp_size = sp;
    l.dp_shard_size = std::max<std::int64_t>(1, world_size / (sp * layout.dp_replicate_size));
    consider("--sp-size " + std::to_string(sp) +
                 (world_size < sp * layout.dp_replicate_size
                      ? " (on " + std::to_string(sp * layout.dp_replicate_size) + " ranks)"
                      : ""),
             t, l);
    if (!a.changes.empty() && a.changes.back().rfind("--sp-size", 0) == 0) break;
  }
  if (a.max_seq_length_that_fits > 0)
    a.changes.push_back("--max-seq-length " + std::to_string(a.max_seq_length_that_fits));
  return a;
}

std::string format_fit(const FitAdvice& a, std::int64_t budget) {
  std::ostringstream out;
  out << "fit: " << format_bytes(a.device_bytes) << " per device of " << format_bytes(budget)
      << (a.fits ? ": fits" : ": does NOT fit") << "; the largest --max-seq-length that fits "
      << "with these options is " << a.max_seq_length_that_fits << "\n";
  if (!a.fits) {
    if (a.changes.empty()) out << "  no single change fits; combine them or use more devices\n";
    for (const std::string& change : a.changes) out << "  fits with " << change << "\n";
  }
  return out.str();
}

std::string device_fit_refusal(const TrainConfig& c, const model::ModelConfig& model,
                               const parallel::ParallelConfig& layout, std::int64_t device_bytes,
                               int world_size, std::int64_t host_budget,
                               std::int64_t offload_activation_layers) {
  const auto bf16 = parallel::Precision::bf16_mixed;
  TrainConfig resolved = c;
  if (c.offload_activations) resolved.offload_activation_layers = offload_activation_layers;
  const RunMemory memory = run_memory(resolved, model, layout, bf16, host_budget);
  if (memory.device_bytes() <= device_bytes) return "";
  const FitAdvice advice =
      advise_fit(c, model, layout, bf16, device_bytes, world_size, host_budget);
  std::ostringstream out;
  out << "the memory plan needs " << format_bytes(memory.device_bytes()) << " per GPU (--model "
      << c.model << ", --max-seq-length " << c.max_seq_length << ", --sp-size " << c.sp_size
      << ", --zero-stage " << c.zero_stage << ") but this GPU has " << format_bytes(device_bytes)
      << " for it; ";
  if (advice.changes.empty()) {
    out << "no single option change fits (combine them, or use more GPUs)";
  } else {
    out << "options that would fit:";
    for (std::size_t i = 0; i < advice.changes.size(); ++i)
      out << (i ? ";" : "") << " " << advice.changes[i];
  }
  out << " (`ulysses info` with the same options prints the plan; --ignore-memory-plan tries "
         "anyway)";
  return out.str();
}

ActivationChoice resolve_activation_choice(const TrainConfig& c, const model::ModelConfig& model,
                                           const parallel::ParallelConfig& layout,
                                           std::int64_t device_bytes, std::int64_t host_budget) {
  const auto bf16 = parallel::Precision::bf16_mixed;
  const auto choice_for = [&](std::int64_t n) {
    ActivationChoice a;
    a.recompute_layers = n;
    a.checkpoint_layers = c.checkpoint_layers == kCheckpointLayersAuto ? -1 : c.checkpoint_layers;
    if (c.offload_activations) {
      TrainConfig t = c;
      t.recompute_attention_layers = n;
      a.offload_layers =
          run_memory(t, model, layout, bf16, c.offload_activation_layers < 0 ? host_budget : 0)
              .plan.activation_layers_offloaded;
    }
    return a;
  };
  const std::int64_t L = model.num_hidden_layers;
  const std::int64_t budget = auto_choice_budget(device_bytes);
  // The fewest layers n in [0, L) for which fits(n); -1 (every layer) when none does (the fit
  // check then refuses the run if every layer does not fit either).
  const auto fewest = [&](const auto& fits) -> std::int64_t {
    for (std::int64_t n = 0; n < L; ++n)
      if (fits(n)) return n;
    return -1;
  };
  if (c.gradient_checkpointing && c.checkpoint_layers == kCheckpointLayersAuto) {
    // The fewest checkpointed layers: the most kept whole.
    ActivationChoice a = choice_for(c.recompute_attention_layers);
    a.checkpoint_layers = fewest([&](std::int64_t n) {
      TrainConfig t = c;
      t.checkpoint_layers = n;
      return run_memory(t, model, layout, bf16, host_budget).device_bytes() <= budget;
    });
    return a;
  }
  if (!c.gradient_checkpointing || !c.recompute_attention ||
      c.recompute_attention_layers != kRecomputeAttentionAuto)
    return choice_for(c.recompute_attention_layers);
  return choice_for(fewest([&](std::int64_t n) {
    TrainConfig t = c;
    t.recompute_attention_layers = n;
    t.offload_activation_layers = choice_for(n).offload_layers;
    const RunMemory m = run_memory(t, model, layout, bf16, host_budget);
    return m.device_bytes() <= budget && (host_budget <= 0 || m.host_bytes() <= host_budget);
  }));
}

std::int64_t resolve_loss_tile(const TrainConfig& c, const model::ModelConfig& model,
                               const parallel::ParallelConfig& layout, bool cuda,
                               std::int64_t device_bytes, std::int64_t host_budget) {
  if (c.loss_tile_tokens != kLossTileAuto) return c.loss_tile_tokens;
  if (!cuda || device_bytes <= 0) return kLossTileTokensFallback;
  const std::int64_t budget = auto_choice_budget(device_bytes);
  for (const std::int64_t tile : kLossTileChoices) {
    TrainConfig t = c;
    t.loss_tile_tokens = tile;
    if (run_memory(t, model, layout, parallel::Precision::bf16_mixed, host_budget).device_bytes() <=
        budget)
      return tile;
  }
  return kLossTileTokensFallback;
}

std::optional<EpochPlan> plan_epoch(const data::DocumentSource& source, const TrainConfig& c,
                                    std::int64_t global_batch_sequences) {
  const std::int64_t n = source.documents_per_epoch();
  if (n <= 0) return std::nullopt;
  data::PackerOptions packing;
  packing.max_seq_length = c.max_seq_length;
  packing.packing = c.packing;
  packing.pad_multiple = sequence_pad_multiple(c);
  data::Packer packer(source, packing);
  EpochPlan e;
  e.documents = n;
  while (packer.position() < n) {
    e.tokens += packer.next().length();
    ++e.sequences;
  }
  e.steps = static_cast<double>(e.sequences) / static_cast<double>(global_batch_sequences);
  return e;
}

std::string format_epoch(const EpochPlan& e, const TrainConfig& c) {
  std::ostringstream out;
  out << "epoch: " << e.documents << " documents in " << e.sequences << " sequences (" << e.tokens
      << " tokens) = " << e.steps << " steps per epoch; --max-steps " << c.max_steps << " = "
      << static_cast<double>(c.max_steps) / e.steps << " epochs\n";
  return out.str();
}

TrainConfig resolve_training_length(const TrainConfig& config, int world_size) {
  validate(config, world_size);
  if (!(config.num_train_epochs > 0)) return config;
  const model::ModelConfig model = model::resolve_model_config(config.model);
  const parallel::ParallelConfig layout = parallel::resolve_parallel_config(
      {config.sp_size, config.dp_shard_size, config.dp_replicate_size}, world_size, model);
  const auto source = data::open_data(data_options(config, model.vocab_size));
  const auto epoch = plan_epoch(*source, config, global_batch(config, layout));
  if (!epoch)
    UL_FAIL("--num-train-epochs needs a finite data set; --data ", config.data,
            " is endless: use --max-steps");
  TrainConfig resolved = config;
  resolved.max_steps = std::max<std::int64_t>(
      1, static_cast<std::int64_t>(std::ceil(config.num_train_epochs * epoch->steps - 1e-9)));
  return resolved;
}

// `ulysses info`: the plan of a `train` command line (same options, same meanings) without
// running it, for a job of --world-size ranks with --memory-gib per device.
std::string info_report(const TrainConfig& options, int world_size_option, double memory_gib,
                        const std::string& precision_option, double host_memory_gib) {
  using namespace ulysses::model;
  using namespace ulysses::parallel;
  std::string out;
  const ModelConfig c = resolve_model_config(options.model);
  const int world_size = world_size_option > 0
                             ? world_size_option
                             : static_cast<int>(options.sp_size * options.dp_replicate_size *
                                                std::max<std::int64_t>(1, options.dp_shard_size));
  TrainConfig config = resolve_training_length(options, world_size);
  const ParallelConfig layout = resolve_parallel_config(
      {config.sp_size, config.dp_shard_size, config.dp_replicate_size, resolved_ring_size(config)},
      world_size, c);
  const bool bf16 =
      precision_option == "bf16" || (precision_option == "auto" && config.device != "cpu");
  const Precision precision = bf16 ? Precision::bf16_mixed : Precision::fp32;
  appendf(out, "model %s: %s\n", config.model.c_str(), model_type_name(c.model_type));
  appendf(
      out, "  layers %lld, hidden %lld, intermediate %lld, heads %lld (kv %lld), head_dim %lld\n",
      static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.hidden_size),
      static_cast<long long>(c.intermediate_size), static_cast<long long>(c.num_attention_heads),
      static_cast<long long>(c.num_key_value_heads), static_cast<long long>(c.head_dim));
  appendf(out, "  vocab %lld, tied embeddings %s, rope %s (theta %g), q/k norm %s, qkv bias %s\n",
          static_cast<long long>(c.vocab_size), c.tie_word_embeddings ? "yes" : "no",
          ops::rope_type_name(c.rope.type), c.rope.theta, c.qk_norm ? "yes" : "no",
          c.qkv_bias ? "yes" : "no");
  appendf(out, "  parameters %lld (matmul %lld)\n", static_cast<long long>(parameter_count(c)),
          static_cast<long long>(matmul_parameter_count(c)));
  appendf(out, "  model FLOPs per token at %lld tokens: %.4g (forward + backward)\n",
          static_cast<long long>(config.max_seq_length), flops_per_token(c, config.max_seq_length));
  const std::int64_t zero_ranks = layout.dp_shard_size * layout.sp_size;
  appendf(out,
          "layout: world %d = dp_replicate %lld x dp_shard %lld x sp %lld; ZeRO stage %lld "
          "over %lld ranks (dp_shard x sp)%s%s%s\n",
          world_size, static_cast<long long>(layout.dp_replicate_size),
          static_cast<long long>(layout.dp_shard_size), static_cast<long long>(layout.sp_size),
          static_cast<long long>(config.zero_stage), static_cast<long long>(zero_ranks),
          config.offload_optimizer ? ", optimizer offloaded" : "",
          config.offload_params ? ", parameters offloaded" : "",
          config.offload_gradients ? ", gradients offloaded" : "");
  if (layout.ring_size > 1)
    appendf(out, "attention: %s, ring of %lld x Ulysses over %lld ranks (zigzag chunks)\n",
            layout.ring_size == layout.sp_size ? "ring" : "hybrid",
            static_cast<long long>(layout.ring_size),
            static_cast<long long>(layout.ulysses_size()));
  appendf(out, "sequence: %lld tokens, %lld per device\n",
          static_cast<long long>(config.max_seq_length),
          static_cast<long long>(config.max_seq_length / config.sp_size));
  const auto budget = static_cast<std::int64_t>(memory_gib * (1ll << 30));
  const auto host_budget = static_cast<std::int64_t>(host_memory_gib * (1ll << 30));
  // --recompute-attention-layers auto and --checkpoint-layers auto, as the trainer resolves them
  // on a GPU of --memory-gib (every layer without a budget).
  const bool recompute_auto = config.gradient_checkpointing && config.recompute_attention &&
                              config.recompute_attention_layers == kRecomputeAttentionAuto;
  const bool checkpoint_auto =
      config.gradient_checkpointing && config.checkpoint_layers == kCheckpointLayersAuto;
  if (recompute_auto || checkpoint_auto) {
    const bool resolvable = budget > 0 && bf16;
    const ActivationChoice choice =
        resolvable ? resolve_activation_choice(config, c, layout, budget, host_budget)
                   : ActivationChoice{};
    const auto say = [&](const char* flag, std::int64_t n) {
      const std::string what = !resolvable ? "every layer (no --memory-gib to fit on a GPU)"
                               : n < 0     ? "every layer (none fewer fits)"
                                           : std::to_string(n) + " of " +
                                             std::to_string(c.num_hidden_layers) +
                                             " layers (the fewest that fit 97% of --memory-gib)";
      appendf(out, "checkpointing: %s auto -> %s\n", flag, what.c_str());
    };
    if (recompute_auto) {
      config.recompute_attention_layers = choice.recompute_layers;
      say("--recompute-attention-layers", choice.recompute_layers);
    }
    if (checkpoint_auto) {
      config.checkpoint_layers = choice.checkpoint_layers;
      say("--checkpoint-layers", choice.checkpoint_layers);
    }
  }
  if (config.loss_tile_tokens == kLossTileAuto) {
    // As the trainer resolves it on a GPU of --memory-gib, after the activation choices.
    const bool resolvable = budget > 0 && bf16;
    config.loss_tile_tokens =
        resolve_loss_tile(config, c, layout, resolvable, budget, host_budget);
    appendf(out, "loss: --loss-tile-tokens auto -> %lld tokens per tile (%s)\n",
            static_cast<long long>(config.loss_tile_tokens),
            resolvable ? "the largest of 4096, 2048 that fits 97% of --memory-gib, else 1024"
                       : "no --memory-gib to fit on a GPU");
  }
  const RunMemory memory = run_memory(config, c, layout, precision, host_budget);
  out += format_memory_plan(memory.plan, memory.input);
  if (budget > 0)
    out += format_fit(advise_fit(config, c, layout, precision, budget, world_size, host_budget),
                      budget);
  if (budget > 0 && host_budget > 0) {
    if (memory.host_bytes() > host_budget)
      appendf(out, "host: %s per rank does NOT fit --host-memory-gib %g\n",
              format_bytes(memory.host_bytes()).c_str(), host_memory_gib);
    // The reach table compares checkpointing choices: its base is this run with checkpointing
    // (and so the MLP tile checkpointing gets by default).
    TrainConfig checkpointed = config;
    checkpointed.gradient_checkpointing = true;
    parallel::MemoryPlanInput reach =
        memory_plan_input(checkpointed, layout, precision, host_budget);
    reach.budget_bytes = budget;
    reach.host_budget_bytes = host_budget;
    out += format_reach_table(c, reach);
  }
  out += zero_memory_table(c, static_cast<int>(zero_ranks), precision);
  if (!data::is_synthetic(config.data)) {
    const auto source = data::open_data(data_options(config, c.vocab_size));
    if (const auto epoch = plan_epoch(*source, config, global_batch(config, layout)))
      out += format_epoch(*epoch, config);
  }
  return out;
}

}  // namespace ulysses::train
