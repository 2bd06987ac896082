// OpProfiler with CUDA events: ops on a profiled CUDA context are timed on the compute stream and
// read once afterwards.
#include "ulysses/core/op_profiler.h"

#include <gtest/gtest.h>

#include <memory>

#include "cuda_test_util.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/ops/rmsnorm.h"

namespace ulysses {
namespace {

TEST(CudaOpProfiler, TimesOpsWithEventsPerPhase) {
  UL_REQUIRE_GPU();
  Context ctx = testing::gpu();
  ctx.profiler = std::make_shared<OpProfiler>();
  const std::int64_t N = 4096, C = 2560;
  Tensor x = Tensor::zeros({N, C}, DType::bf16, Device::cuda(0));
  Tensor w = Tensor::zeros({C}, DType::bf16, Device::cuda(0));
  Tensor y = Tensor::zeros({N, C}, DType::bf16, Device::cuda(0));
  Tensor rstd = Tensor::zeros({N}, DType::f32, Device::cuda(0));
  {
    PhaseScope phase(ctx, "forward");
    for (int i = 0; i < 5; ++i) {
      ops::rmsnorm_forward(ctx, x, w, 1e-6f, y, rstd);
      ops::add_inplace(ctx, y, x);
    }
  }
  const auto kinds = ctx.profiler->kind_totals();
  ASSERT_EQ(kinds.size(), 2u);
  for (const auto& r : kinds) {
    EXPECT_EQ(r.calls, 5) << r.kind;
    EXPECT_GT(r.ms, 0.0) << r.kind;
  }
  const auto phases = ctx.profiler->phase_totals();
  ASSERT_EQ(phases.size(), 1u);
  EXPECT_GE(phases[0].ms, kinds[0].ms + kinds[1].ms);
  // Events are recycled: a second round of reads works the same.
  ops::add_inplace(ctx, y, x);
  EXPECT_EQ(ctx.profiler->kind_totals().size(), 2u);
}

}  // namespace
}  // namespace ulysses
