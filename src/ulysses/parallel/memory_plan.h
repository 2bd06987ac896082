// Memory budget per device, printed before step 1 and by `ulysses info`. It lives in parallel/
// because it counts what the parallel layout adds (Ulysses' head-sharded copies with the
// strategy's own kv-chunk rule, ZeRO's shards) to what the model keeps (model/decoder.h).
#pragma once

#include <cstdint>
#include <string>

#include "ulysses/model/config.h"

namespace ulysses::parallel {


enum class Precision { fp32, bf16_mixed };  // CPU reference / CUDA (bf16 + fp32 master)

struct MemoryPlanInput {
  std::int64_t tokens_per_device = 1024;  // local tokens of one micro-step sequence
  bool gradient_checkpointing = false;
  std::int64_t loss_tile_tokens = 1024;
  Precision precision = Precision::fp32;
  std::int64_t budget_bytes = 0;  // device memory to fit into (0 = unknown)
  // Ulysses ranks per sequence (1: local attention). With sp > 1 each layer's attention also
  // holds head-sharded copies of q, k, v and its output (and their gradients in backward);
  // kv heads replicated when sp_size does not divide them.
  std::int64_t sp_size = 1;
};

struct MemoryPlan {
  std::int64_t params = 0;       // weights used by forward/backward
  std::int64_t master = 0;       // fp32 master weights (bf16 mixed precision only)
  std::int64_t grads = 0;
  std::int64_t optimizer = 0;    // AdamW moments
  std::int64_t activations = 0;  // kept for backward
  std::int64_t buffers = 0;      // transient: one layer's backward temporaries, loss tile
  std::int64_t total() const { return params + master + grads + optimizer + activations + buffers; }
  // Largest tokens_per_device whose total fits budget_bytes (0 when no budget or none fits).
  std::int64_t max_tokens_that_fit = 0;
};

MemoryPlan plan_memory(const model::ModelConfig& config, const MemoryPlanInput& input);
std::string format_memory_plan(const MemoryPlan& plan, const MemoryPlanInput& input);

}  // namespace ulysses::parallel
