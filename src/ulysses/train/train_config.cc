#include "ulysses/train/train_config.h"

#include <cmath>
#include <string>

#include "ulysses/core/error.h"
#include "ulysses/data/source.h"
#include "ulysses/parallel/zero.h"
#include "ulysses/train/schedule.h"

namespace ulysses::train {

namespace {
void positive(std::int64_t value, const char* flag) {
  if (value <= 0) UL_FAIL(flag, " must be a positive integer (got ", value, ")");
}
void finite(double value, const char* flag) {
  if (!std::isfinite(value)) UL_FAIL(flag, " must be a finite number (got ", value, ")");
}
void non_negative(double value, const char* flag) {
  if (!(value >= 0)) UL_FAIL(flag, " must be >= 0 (got ", value, ")");
}
}  // namespace

void validate(const TrainConfig& c) {
  positive(c.max_seq_length, "--max-seq-length");
  positive(c.per_device_train_batch_size, "--per-device-train-batch-size");
  positive(c.gradient_accumulation_steps, "--gradient-accumulation-steps");
  positive(c.max_steps, "--max-steps");
  positive(c.logging_steps, "--logging-steps");
  if (c.loss_tile_tokens < 1 && c.loss_tile_tokens != kLossTileAuto)
    UL_FAIL("--loss-tile-tokens must be >= 1 or auto; got ", c.loss_tile_tokens);
  positive(c.copy_min_length, "--copy-min-length");
  if (c.mlp_tile_tokens < -1)
    UL_FAIL("--mlp-tile-tokens must be >= 1, 0 (untiled) or -1 (automatic); got ",
            c.mlp_tile_tokens);
  if (c.offload_activation_layers < -1)
    UL_FAIL("--offload-activation-layers must be >= 0 or -1 (every layer); got ",
            c.offload_activation_layers);
  if (c.recompute_attention_layers < -1 && c.recompute_attention_layers != kRecomputeAttentionAuto)
    UL_FAIL("--recompute-attention-layers must be >= 0, -1 (every layer) or auto; got ",
            c.recompute_attention_layers);
  if (c.recompute_attention_layers != -1 && !c.recompute_attention)
    UL_FAIL("--recompute-attention-layers ",
            c.recompute_attention_layers == kRecomputeAttentionAuto
                ? std::string("auto")
                : std::to_string(c.recompute_attention_layers),
            " needs --recompute-attention");
  if (c.recompute_attention && !c.gradient_checkpointing)
    UL_FAIL(
        "--recompute-attention needs --gradient-checkpointing (without it every activation "
        "is kept and nothing is recomputed)");
  if (c.checkpoint_layers != -1) {
    const std::string value = c.checkpoint_layers == kCheckpointLayersAuto
                                  ? std::string("auto")
                                  : std::to_string(c.checkpoint_layers);
    if (c.checkpoint_layers < -1 && c.checkpoint_layers != kCheckpointLayersAuto)
      UL_FAIL("--checkpoint-layers must be >= 0, -1 (every layer) or auto; got ", value);
    if (!c.gradient_checkpointing)
      UL_FAIL("--checkpoint-layers ", value,
              " needs --gradient-checkpointing (it chooses which layers are checkpointed)");
    if (c.recompute_attention || c.offload_activations)
      UL_FAIL("--checkpoint-layers ", value, " cannot be combined with ",
              c.recompute_attention ? "--recompute-attention" : "--offload-activations",
              ": that option spends time to save memory, --checkpoint-layers spends memory to "
              "save time; use one of them");
  }
  if (c.offload_activations && !c.gradient_checkpointing)
    UL_FAIL(
        "--offload-activations needs --gradient-checkpointing (it moves what checkpointing "
        "keeps); add --gradient-checkpointing");
  positive(c.copy_max_length, "--copy-max-length");
  if (c.copy_min_length > c.copy_max_length)
    UL_FAIL("--copy-min-length (", c.copy_min_length, ") must not exceed --copy-max-length (",
            c.copy_max_length, ")");
  // Every floating-point option: NaN and infinities are refused before anything else.
  finite(c.learning_rate, "--learning-rate");
  finite(c.num_train_epochs, "--num-train-epochs");
  non_negative(c.num_train_epochs, "--num-train-epochs");
  if (c.num_train_epochs > 0 && data::is_synthetic(c.data))
    UL_FAIL("--num-train-epochs needs a finite data set; --data ", c.data,
            " is endless: use --max-steps");
  finite(c.weight_decay, "--weight-decay");
  finite(c.adam_beta1, "--adam-beta1");
  finite(c.adam_beta2, "--adam-beta2");
  finite(c.adam_epsilon, "--adam-epsilon");
  finite(c.max_grad_norm, "--max-grad-norm");
  finite(c.initializer_range, "--initializer-range");
  positive(c.max_skipped_steps, "--max-skipped-steps");
  non_negative(c.learning_rate, "--learning-rate");
  non_negative(c.weight_decay, "--weight-decay");
  non_negative(c.max_grad_norm, "--max-grad-norm");
  non_negative(c.adam_epsilon, "--adam-epsilon");
  if (!(c.initializer_range > 0)) UL_FAIL("--initializer-range must be > 0");
  if (!(c.adam_beta1 >= 0 && c.adam_beta1 < 1)) UL_FAIL("--adam-beta1 must be in [0, 1)");
  if (!(c.adam_beta2 >= 0 && c.adam_beta2 < 1)) UL_FAIL("--adam-beta2 must be in [0, 1)");
  if (c.warmup_steps < 0) UL_FAIL("--warmup-steps must be >= 0 (got ", c.warmup_steps, ")");
  if (c.save_total_limit < 0)
    UL_FAIL("--save-total-limit must be >= 0 (got ", c.save_total_limit, ")");
  if (!c.resume_from_checkpoint.empty() && c.output_dir.empty() &&
      c.resume_from_checkpoint == "latest")
    UL_FAIL("--resume-from-checkpoint latest needs --output-dir (where the checkpoints are)");
  if (c.save_steps < 0) UL_FAIL("--save-steps must be >= 0 (got ", c.save_steps, ")");
  if (c.eval_steps < 0) UL_FAIL("--eval-steps must be >= 0 (got ", c.eval_steps, ")");
  positive(c.per_device_eval_batch_size, "--per-device-eval-batch-size");
  if (c.eval_steps > 0 && c.eval_data.empty())
    UL_FAIL("--eval-steps ", c.eval_steps, " needs --eval-data (the file to evaluate on)");
  parse_dtype_option(c.save_dtype, "--save-dtype");
  parse_dtype_option(c.grad_reduce_dtype, "--grad-reduce-dtype");  // checked here, in order
  if (c.device != "cpu" && c.device != "cuda" && c.device != "auto")
    UL_FAIL("--device must be cpu, cuda or auto (got '", c.device, "')");
  parse_attn_implementation(c.attn_implementation);
  parse_schedule_type(c.lr_scheduler_type);
  positive(c.sp_size, "--sp-size");
  positive(c.dp_replicate_size, "--dp-replicate-size");
  if (c.dp_shard_size < 0) UL_FAIL("--dp-shard-size must be >= 1 (or 0 for automatic)");
  if (c.sp_backend != "ulysses" && c.sp_backend != "ring" && c.sp_backend != "hybrid")
    UL_FAIL("--sp-backend '", c.sp_backend,
            "' is not supported (available: ulysses, ring, hybrid)");
  if (c.ring_size < 0) UL_FAIL("--ring-size must be >= 1 (got ", c.ring_size, ")");
  if (c.sp_backend == "ulysses" && c.ring_size > 1)
    UL_FAIL("--ring-size ", c.ring_size,
            " needs --sp-backend hybrid (or ring); --sp-backend "
            "ulysses has no ring");
  if (c.sp_backend == "ring" && c.ring_size != 0 && c.ring_size != c.sp_size)
    UL_FAIL("--sp-backend ring uses a ring of all --sp-size ", c.sp_size,
            " ranks, but --ring-size is ", c.ring_size,
            "; drop --ring-size, or use --sp-backend hybrid for a ring of ", c.ring_size);
  if (c.sp_backend == "hybrid") {
    if (c.ring_size == 0)
      UL_FAIL(
          "--sp-backend hybrid needs --ring-size R (sp = Ulysses degree x R, R dividing "
          "--sp-size ",
          c.sp_size, ")");
    if (c.sp_size % c.ring_size != 0)
      UL_FAIL("--ring-size ", c.ring_size, " does not divide --sp-size ", c.sp_size,
              " (sp = Ulysses degree x ring size); choose a ring size that divides ", c.sp_size);
  }
  if (c.sp_pipeline && c.sp_backend != "ulysses")
    UL_FAIL("--sp-pipeline applies to --sp-backend ulysses only (got --sp-backend ", c.sp_backend,
            ")");
  const std::int64_t pad = sequence_pad_multiple(c);
  if (c.packing && c.max_seq_length % pad != 0)
    UL_FAIL("--max-seq-length ", c.max_seq_length, " is not a multiple of ",
            pad == c.sp_size ? "--sp-size " + std::to_string(c.sp_size)
                             : "2 x --sp-size = " + std::to_string(pad) + " (--sp-backend " +
                                   c.sp_backend + ": zigzag chunks)",
            ": packed sequences have exactly that length and each SP rank takes its share of "
            "it; use --max-seq-length ",
            (c.max_seq_length + pad - 1) / pad * pad);
  parallel::validate_zero_config(zero_config(c), c.dp_replicate_size);
}

parallel::ZeroConfig zero_config(const TrainConfig& c) {
  parallel::ZeroConfig z;
  z.stage = static_cast<int>(c.zero_stage);
  z.offload_optimizer = c.offload_optimizer;
  z.offload_params = c.offload_params;
  z.offload_gradients = c.offload_gradients;
  z.overlap = c.zero_overlap;
  z.grad_reduce_dtype = parse_dtype_option(c.grad_reduce_dtype, "--grad-reduce-dtype");
  return z;
}

std::int64_t effective_mlp_tile(const TrainConfig& c) {
  if (c.mlp_tile_tokens >= 0) return c.mlp_tile_tokens;
  return c.gradient_checkpointing ? 8192 : 0;
}

void validate(const TrainConfig& c, int world_size) {
  positive(c.sp_size, "--sp-size");
  positive(c.dp_replicate_size, "--dp-replicate-size");
  if (c.dp_shard_size < 0) UL_FAIL("--dp-shard-size must be >= 1 (or 0 for automatic)");
  const std::int64_t groups = c.sp_size * c.dp_replicate_size;
  if (c.dp_shard_size == 0 && world_size % groups != 0)
    UL_FAIL("world size ", world_size, " is not divisible by --sp-size ", c.sp_size,
            " x --dp-replicate-size ", c.dp_replicate_size, "; launch a multiple of ", groups,
            " ranks or change the sizes");
  if (c.dp_shard_size > 0 && groups * c.dp_shard_size != world_size)
    UL_FAIL("--dp-replicate-size ", c.dp_replicate_size, " x --dp-shard-size ", c.dp_shard_size,
            " x --sp-size ", c.sp_size, " = ", groups * c.dp_shard_size, " but the job has ",
            world_size,
            " ranks; make the product equal the number of ranks (or leave "
            "--dp-shard-size unset to derive it)");
  validate(c);
}

std::int64_t resolved_ring_size(const TrainConfig& c) {
  if (c.sp_backend == "ring") return c.sp_size;
  if (c.sp_backend == "hybrid") return c.ring_size;
  return 1;
}

std::int64_t sequence_pad_multiple(const TrainConfig& c) {
  return c.sp_backend == "ulysses" || c.sp_size == 1 ? c.sp_size : 2 * c.sp_size;
}

DType parse_dtype_option(const std::string& value, const char* flag) {
  if (value == "float32") return DType::f32;
  if (value == "bfloat16") return DType::bf16;
  UL_FAIL(flag, " must be float32 or bfloat16 (got '", value, "')");
}

AttnImplementation parse_attn_implementation(const std::string& value) {
  if (value == "auto") return AttnImplementation::automatic;
  if (value == "blockwise") return AttnImplementation::blockwise;
  if (value == "cudnn") return AttnImplementation::cudnn;
  if (value == "builtin") return AttnImplementation::builtin;
  UL_FAIL("--attn-implementation must be auto, cudnn, builtin (CUDA) or blockwise (CPU) (got '",
          value, "')");
}

}  // namespace ulysses::train
