// Memory budget per device and per host, printed before step 1 and by `ulysses info`. It lives
// in parallel/ because it counts what the parallel layout adds (Ulysses' head-sharded copies
// with the strategy's own kv-chunk rule, ZeRO's shards and offloads) to what the model keeps
// (model/decoder.h).
//
// The activation model follows the decoder's code (model/decoder.cc): with checkpointing every
// checkpointed layer keeps its input and, unless attention is recomputed, attention's output and
// statistics (a layer past checkpoint_layers keeps everything, as without checkpointing);
// the first `offload_activation_layers` layers keep theirs in host memory instead (two layers'
// worth come back at a time: the one in backward and the prefetched one). One layer's
// recompute + backward runs at a time; its peak is the larger of the attention-backward phase
// (projections, attention inputs and output, their gradients, the attention kernel's
// workspace) and the MLP-backward phase (norm outputs and, per MLP token tile, the gate/up/SwiGLU
// values and their gradients). The LM head + loss phase holds one loss tile of logits.
#pragma once

#include <cstdint>
#include <string>

#include "ulysses/model/config.h"

namespace ulysses::parallel {

enum class Precision { fp32, bf16_mixed };  // CPU reference / CUDA (bf16 + fp32 master)

struct MemoryPlanInput {
  std::int64_t tokens_per_device = 1024;  // local tokens of one micro-step sequence
  bool gradient_checkpointing = false;
  bool recompute_attention = false;              // checkpointing keeps only the layer inputs
  std::int64_t recompute_attention_layers = -1;  // with it: layers 0 .. N-1 (-1: all)
  // With checkpointing: layers 0 .. N-1 are checkpointed (-1: all); the others keep every
  // activation, as without checkpointing.
  std::int64_t checkpoint_layers = -1;
  std::int64_t loss_tile_tokens = 1024;
  std::int64_t mlp_tile_tokens = 0;  // 0: untiled
  Precision precision = Precision::fp32;
  std::int64_t budget_bytes = 0;       // device memory to fit into (0 = unknown)
  std::int64_t host_budget_bytes = 0;  // host memory per rank to fit into (0 = unknown)
  // Ulysses ranks per sequence (1: local attention). With sp > 1 each layer's attention also
  // holds head-sharded copies of q, k, v and its output (and their gradients in backward);
  // kv heads replicated when sp_size does not divide them.
  std::int64_t sp_size = 1;
  // Ring / hybrid attention: ranks of the ring (1: Ulysses only; sp_size: a pure ring). The
  // Ulysses exchange spans sp_size / ring_size ranks; the ring adds its K/V and f32 gradient
  // buffers to a layer's attention backward, and its kernel temporaries are those of one block
  // pair (a zigzag chunk) rather than of the whole sequence.
  std::int64_t ring_size = 1;
  // Model states (parallel/zero.h): stage over zero_group ranks, offloads.
  int zero_stage = 0;
  int zero_group = 1;
  bool offload_optimizer = false;
  bool offload_params = false;
  bool offload_gradients = false;  // stage >= 2 with offload_optimizer: grads in host memory
  // Layers (from layer 0) whose checkpointed activations wait in host memory; -1 = as many as
  // host_budget_bytes allows (every layer without a host budget). Needs checkpointing.
  std::int64_t offload_activation_layers = 0;
};

struct MemoryPlan {
  // Device bytes.
  std::int64_t params = 0;  // weights used by forward/backward
  std::int64_t master = 0;  // fp32 master weights (bf16 mixed precision only)
  std::int64_t grads = 0;
  std::int64_t optimizer = 0;    // AdamW moments
  std::int64_t activations = 0;  // kept for backward
  std::int64_t buffers = 0;      // transient: one layer's backward working set, loss tile, ZeRO
  std::int64_t total() const { return params + master + grads + optimizer + activations + buffers; }
  // Host bytes per rank: offloaded model states with their pinned staging slots, pinned
  // activation buffers.
  std::int64_t host_states = 0;
  std::int64_t host_activations = 0;
  std::int64_t host_total() const { return host_states + host_activations; }
  std::int64_t activation_layers_offloaded = 0;  // resolved offload_activation_layers
  std::int64_t layers = 0;                       // the model's decoder layers
  // Largest tokens_per_device whose device total fits budget_bytes and whose host total fits
  // host_budget_bytes (when given); 0 when no budget or none fits.
  std::int64_t max_tokens_that_fit = 0;
};

MemoryPlan plan_memory(const model::ModelConfig& config, const MemoryPlanInput& input);
std::string format_memory_plan(const MemoryPlan& plan, const MemoryPlanInput& input);

// For `ulysses info --memory-gib G --host-memory-gib H`: the largest sequence per device that
// fits, for each way of trading memory (ZeRO-3 and the offloads, attention recompute,
// activation offload), as a table. input's budgets must be set; its other fields give the rest
// of the layout.
std::string format_reach_table(const model::ModelConfig& config, const MemoryPlanInput& input);

}  // namespace ulysses::parallel
