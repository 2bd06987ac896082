// TrainConfig: every option of `ulysses train`, named as in Hugging Face's TrainingArguments
// and Accelerate (snake_case here and in --config files, kebab-case on the command line).
#pragma once

#include <cstdint>
#include <string>

#include "ulysses/core/dtype.h"
#include "ulysses/parallel/zero_config.h"

namespace ulysses::train {

// --recompute-attention-layers auto.
inline constexpr std::int64_t kRecomputeAttentionAuto = -2;
// --checkpoint-layers auto.
inline constexpr std::int64_t kCheckpointLayersAuto = -2;
// --loss-tile-tokens auto (the default), and the tile it falls back to (the CPU's, and a GPU's
// when no larger tile fits the memory plan).
inline constexpr std::int64_t kLossTileAuto = -2;
inline constexpr std::int64_t kLossTileTokensFallback = 1024;

struct TrainConfig {
  // Model and data.
  std::string model = "tiny";           // preset name or HF model directory
  std::string data = "synthetic-copy";  // data source
  std::int64_t copy_min_length = 63;    // synthetic copy task: length range of the random half
  std::int64_t copy_max_length = 63;
  std::int64_t max_seq_length = 1024;
  bool packing = true;
  std::string long_documents = "split";  // split | truncate: documents longer than a sequence
  // Tokenization cache of text .jsonl data: "" = .ulysses_cache next to the data file, "none" =
  // off (data/token_cache.h).
  std::string data_cache_dir;
  // Batch and optimization.
  std::int64_t per_device_train_batch_size = 8;
  std::int64_t gradient_accumulation_steps = 1;
  double learning_rate = 5e-5;
  std::string lr_scheduler_type = "linear";
  std::int64_t warmup_steps = 0;
  std::int64_t max_steps = 100;
  // > 0: train this many epochs of a finite data set (max_steps = ceil(epochs x steps per
  // epoch), train/run_plan.h); replaces max_steps.
  double num_train_epochs = 0;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;
  double initializer_range = 0.02;
  // Memory and kernels.
  bool gradient_checkpointing = false;
  std::string attn_implementation = "auto";
  // Tokens per tile of the fused LM head + cross-entropy (each tile's [tile, vocab] logits exist
  // at once). kLossTileAuto: on a GPU the largest of 4096, 2048 and 1024 that lets the memory
  // plan fit after the activation choices (larger tiles run the LM head GEMMs faster), resolved
  // by the trainer before setup; 1024 on the CPU.
  std::int64_t loss_tile_tokens = kLossTileAuto;
  // MLP token tile: no [tokens x intermediate] tensor exists whole. -1 = automatic (8192 tokens
  // with gradient checkpointing, where tiling costs nothing; untiled without), 0 = untiled.
  std::int64_t mlp_tile_tokens = -1;
  // Checkpointing without keeping attention's output: attention forward runs again in the
  // recompute, and only the layer inputs are kept.
  bool recompute_attention = false;
  // With it: the first N layers (-1: all; kRecomputeAttentionAuto: the fewest, from layer 0,
  // that let the memory plan fit the GPU, resolved by the trainer before setup).
  std::int64_t recompute_attention_layers = -1;
  // With gradient checkpointing: only the first N layers are checkpointed (-1: all); the last
  // L - N keep what a layer keeps without checkpointing and skip the recompute (faster, more
  // memory; the MLP tiles, --mlp-tile-tokens, still recompute their gate/up values).
  // kCheckpointLayersAuto: the fewest checkpointed layers that let the memory plan fit the GPU,
  // resolved by the trainer before setup. Not with recompute_attention or offload_activations.
  std::int64_t checkpoint_layers = -1;
  // Checkpointed layer inputs (and attention outputs) in pinned host memory between forward and
  // backward (CUDA, with --gradient-checkpointing); -1 = every layer, N = the first N layers.
  bool offload_activations = false;
  // A GPU run whose memory plan exceeds the device is refused before setup unless this is set.
  bool ignore_memory_plan = false;
  std::int64_t offload_activation_layers = -1;
  // Parallelism: world = dp_replicate_size x dp_shard_size x sp_size (ranks of mpirun/srun).
  std::int64_t sp_size = 1;
  // Attention strategy when sp_size > 1: ulysses (all-to-all of heads), ring (K/V blocks
  // around a ring, zigzag placement) or hybrid (Ulysses inside groups of sp / ring_size
  // consecutive ranks, a ring of ring_size across them).
  std::string sp_backend = "ulysses";
  // hybrid: the ring size (must divide sp_size); ring: 0 or sp_size; ulysses: 0 or 1. 0 = the
  // backend's own (ring: sp_size).
  std::int64_t ring_size = 0;
  // Ulysses: this rank's heads in two parts so one part's exchanges run beside the other's
  // attention (same results; opt-in: slower on the GPUs measured so far).
  bool sp_pipeline = false;
  std::int64_t dp_shard_size = 0;  // 0 = world / (sp_size * dp_replicate_size)
  std::int64_t dp_replicate_size = 1;
  std::int64_t zero_stage = 0;     // 0-3, over the dp_shard x sp ranks (CPU and CUDA)
  bool offload_optimizer = false;  // ZeRO >= 1: master weights and AdamW state in host memory
  bool offload_params = false;     // ZeRO 3: parameter shards in host memory
  // ZeRO >= 2 with offload_optimizer: gradient shards in pinned host memory, copied there
  // during backward (parallel/zero_config.h).
  bool offload_gradients = false;
  // ZeRO 2-3: prefetch the next group's parameters and reduce-scatter gradients
  // asynchronously (same results; on by default).
  bool zero_overlap = true;
  std::string device = "cpu";  // cpu | cuda | auto
  // Output.
  std::string output_dir = "runs/ulysses";
  std::int64_t save_steps = 0;         // 0 = only at the end
  std::int64_t save_total_limit = 0;   // keep the newest N checkpoint-<step> folders (0 = all)
  std::string resume_from_checkpoint;  // "" = start fresh, "latest" or a checkpoint folder
  // A fresh run into an output_dir that holds an earlier run's checkpoints or model is refused
  // unless this is set (nothing is deleted; rotation only removes this run's checkpoints).
  bool overwrite_output_dir = false;
  // Resuming with settings that change the order of the data (seed, data, batch sizes,
  // sequence length, packing) is refused unless this is set.
  bool ignore_data_order_change = false;
  // Stop the run after this many consecutive steps skipped for a non-finite loss or gradient
  // norm (>= 1).
  std::int64_t max_skipped_steps = 3;
  std::string save_dtype = "float32";  // float32 | bfloat16
  // Element type of the gradient all-reduce between ranks (float32 | bfloat16: half the
  // traffic, sums still accumulated in f32 by each backend, rounded to bf16 once per reduction).
  std::string grad_reduce_dtype = "float32";
  std::int64_t logging_steps = 10;
  // Evaluation (train/evaluator.h): loss and perplexity over the whole eval set, every
  // eval_steps steps (0: only at the end) and at the end of training; "" = none.
  std::string eval_data;
  std::int64_t eval_steps = 0;
  std::int64_t per_device_eval_batch_size = 8;  // sequences per SP group per eval step
  std::uint64_t seed = 42;
  bool quiet = false;  // no progress lines (tests)
};

// The element type named by --save-dtype / --grad-reduce-dtype ("float32" or "bfloat16");
// Error naming the flag otherwise. Parsed once (validate, the trainer's constructor).
DType parse_dtype_option(const std::string& value, const char* flag);

// --attn-implementation: auto, blockwise (the CPU kernel), cudnn, builtin (CUDA kernels).
enum class AttnImplementation { automatic, blockwise, cudnn, builtin };
// The value of --attn-implementation; Error naming the flag and its choices otherwise. Parsed
// once (validate, the trainer's constructor), like parse_dtype_option.
AttnImplementation parse_attn_implementation(const std::string& value);

// The MLP tile the step uses for --mlp-tile-tokens (resolving -1, automatic).
std::int64_t effective_mlp_tile(const TrainConfig& c);

// The ZeRO options of a run (stage, offloads, overlap, gradient reduction dtype); an Error
// names --grad-reduce-dtype when it does not parse.
parallel::ZeroConfig zero_config(const TrainConfig& c);

// Throws Error naming the first invalid option (as its command-line flag) and the fix.
// Checks what needs neither the model nor the world size (see parallel::resolve_parallel_config
// for the layout checks).
void validate(const TrainConfig& config);

// validate(config) preceded by the layout checks that need only the world size (sp_size x
// dp_replicate_size divides it, or the product with an explicit dp_shard_size equals it), so a
// bad layout is reported before the lengths that depend on it (e.g. --max-seq-length being a
// multiple of --sp-size).
void validate(const TrainConfig& config, int world_size);

// The ring size the layout uses (parallel::ParallelConfig::ring_size): 1 for ulysses, sp_size
// for ring, ring_size for hybrid. Call after validate.
std::int64_t resolved_ring_size(const TrainConfig& config);
// What sequences are padded to: a multiple of sp (Ulysses), 2 x sp (ring and hybrid: the
// zigzag's 2 x ring_size chunks, each shared by the Ulysses degree).
std::int64_t sequence_pad_multiple(const TrainConfig& config);

}  // namespace ulysses::train
