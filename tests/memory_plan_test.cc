// The activation plan with Ulysses (MemoryPlanInput::sp_size): each layer's attention also holds
// head-sharded copies of q, k, v and its output, [S, heads / P, D] with S = T * P. Without
// checkpointing every layer keeps them; with checkpointing the strategy drops them after the
// forward and rebuilds them in the recompute (tests/dist/ulysses_test.cc), so one layer's worth
// is planned. Backward adds their gradients once (buffers).
#include <gtest/gtest.h>

#include "ulysses/parallel/memory_plan.h"
#include "ulysses/model/config.h"

namespace ulysses::parallel {
using model::ModelConfig;
using model::preset_config;
namespace {

MemoryPlan plan(const ModelConfig& c, std::int64_t T, std::int64_t sp, bool checkpointing) {
  MemoryPlanInput in;
  in.tokens_per_device = T;
  in.sp_size = sp;
  in.gradient_checkpointing = checkpointing;
  in.precision = Precision::bf16_mixed;
  return plan_memory(c, in);
}

TEST(MemoryPlan, UlyssesHeadShardedCopies) {
  const ModelConfig c = preset_config("qwen3-4b");  // 32 query heads, 8 kv heads, head_dim 128
  const std::int64_t T = 32768, L = c.num_hidden_layers, D = c.head_dim;
  // sp 4 splits the 8 kv heads: k and v hold 2 heads over S = 4 T tokens, q and out 8 heads.
  const std::int64_t split = (2 * T * 32 * D + 2 * (4 * T) * 2 * D) * 2;
  // sp 16 replicates them: one kv head per rank, q and out 2 heads over S = 16 T.
  const std::int64_t replicated = (2 * T * 32 * D + 2 * (16 * T) * 1 * D) * 2;
  for (const bool checkpointing : {false, true}) {
    SCOPED_TRACE(checkpointing ? "checkpointing" : "no checkpointing");
    const MemoryPlan local = plan(c, T, 1, checkpointing);
    const MemoryPlan sp4 = plan(c, T, 4, checkpointing);
    const MemoryPlan sp16 = plan(c, T, 16, checkpointing);
    const std::int64_t layers_holding = checkpointing ? 1 : L;
    EXPECT_EQ(sp4.activations - local.activations, layers_holding * split);
    EXPECT_EQ(sp16.activations - local.activations, layers_holding * replicated);
    EXPECT_EQ(sp4.buffers - local.buffers, split);
    EXPECT_EQ(sp16.buffers - local.buffers, replicated);
    // Model states do not depend on sp.
    EXPECT_EQ(sp4.params + sp4.master + sp4.grads + sp4.optimizer,
              local.params + local.master + local.grads + local.optimizer);
  }
}

TEST(MemoryPlan, LargestFitShrinksWithUlyssesCopies) {
  const ModelConfig c = preset_config("qwen3-4b");
  MemoryPlanInput in;
  in.gradient_checkpointing = true;
  in.precision = Precision::bf16_mixed;
  in.budget_bytes = std::int64_t{80} << 30;
  const std::int64_t local = plan_memory(c, in).max_tokens_that_fit;
  in.sp_size = 4;
  const std::int64_t sp4 = plan_memory(c, in).max_tokens_that_fit;
  EXPECT_GT(local, 0);
  EXPECT_LT(sp4, local);
}

}  // namespace
}  // namespace ulysses::parallel
