#include "ulysses/parallel/memory_plan.h"

#include <cstdio>
#include <sstream>

#include "ulysses/core/format.h"
#include "ulysses/model/decoder.h"
#include "ulysses/parallel/ulysses_exchange.h"

namespace ulysses::parallel {

using model::ModelConfig;
using model::layer_activation_bytes;
using model::parameter_count;

namespace {
MemoryPlan plan_for(const ModelConfig& c, const MemoryPlanInput& in, std::int64_t T) {
  const std::int64_t N = parameter_count(c);
  const std::int64_t act_size = in.precision == Precision::fp32 ? 4 : 2;
  MemoryPlan p;
  if (in.precision == Precision::fp32) {
    p.params = 4 * N;
  } else {
    p.params = 2 * N;
    p.master = 4 * N;
  }
  p.grads = 4 * N;
  p.optimizer = 8 * N;
  // layer_activation_bytes counts f32 elements; scale to the activation element size.
  const std::int64_t layer = layer_activation_bytes(c, T) / 4 * act_size;
  const std::int64_t L = c.num_hidden_layers;
  const std::int64_t residual = T * c.hidden_size * act_size;
  // Ulysses (sp > 1): head-sharded q and output ([S, Hq/P, D]: as large as the local ones)
  // and k, v ([S, kv chunk, D]; the chunk is one head when kv heads are replicated).
  std::int64_t heads_copies = 0;
  if (in.sp_size > 1) {
    const std::int64_t P = in.sp_size, Hkv = c.num_key_value_heads;
    const std::int64_t kv_chunk = kv_head_chunks(Hkv, P).chunk;
    heads_copies = (2 * T * c.q_dim() + 2 * T * P * kv_chunk * c.head_dim) * act_size;
  }
  // Checkpointing keeps each layer's input and attention output (+ lse in f32); the strategy
  // drops its head-sharded copies and rebuilds them in the recompute, so one layer's full
  // activations (with its copies) exist at a time.
  const std::int64_t kept = residual + T * c.q_dim() * act_size + T * c.num_attention_heads * 4;
  p.activations = in.gradient_checkpointing ? L * kept + layer + heads_copies
                                            : L * (layer + heads_copies);
  p.activations += 2 * residual;  // embedding output and final norm output
  const std::int64_t tile = std::min(in.loss_tile_tokens, T);
  // Backward temporaries (with Ulysses: the gradients of the head-sharded copies); logits of one
  // loss tile and their gradient.
  p.buffers = layer + heads_copies + 2 * tile * c.vocab_size * 4;
  return p;
}
}  // namespace

MemoryPlan plan_memory(const ModelConfig& c, const MemoryPlanInput& in) {
  MemoryPlan plan = plan_for(c, in, in.tokens_per_device);
  if (in.budget_bytes > 0) {
    // Total is increasing in T: binary search the largest T that fits.
    std::int64_t lo = 0, hi = std::int64_t{1} << 34;
    while (lo < hi) {
      const std::int64_t mid = (lo + hi + 1) / 2;
      if (plan_for(c, in, mid).total() <= in.budget_bytes) lo = mid;
      else hi = mid - 1;
    }
    plan.max_tokens_that_fit = lo;
  }
  return plan;
}

std::string format_memory_plan(const MemoryPlan& p, const MemoryPlanInput& in) {
  std::ostringstream out;
  out << "memory per device (" << (in.precision == Precision::fp32 ? "fp32" : "bf16 + fp32 master")
      << ", " << in.tokens_per_device << " tokens per micro-step"
      << (in.gradient_checkpointing ? ", gradient checkpointing" : "") << "):\n";
  auto row = [&](const char* name, std::int64_t bytes) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "  %-12s %12s\n", name, format_bytes(bytes).c_str());
    out << buf;
  };
  row("params", p.params);
  if (p.master) row("master", p.master);
  row("grads", p.grads);
  row("optimizer", p.optimizer);
  row("activations", p.activations);
  row("buffers", p.buffers);
  row("total", p.total());
  if (in.budget_bytes > 0)
    out << "  largest sequence per device that fits in " << format_bytes(in.budget_bytes) << ": "
        << p.max_tokens_that_fit << " tokens\n";
  return out.str();
}

}  // namespace ulysses::parallel
