// OpProfiler bookkeeping on the CPU (steady clock): calls and totals per (phase, kind), nesting
// (only the outermost op scope records), phases, enable/disable, reset and misuse.
#include "ulysses/core/op_profiler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "test_util.h"
#include "ulysses/ops/elementwise.h"

namespace ulysses {
namespace {

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

Context profiled_context() {
  Context ctx;
  ctx.profiler = std::make_shared<OpProfiler>();
  return ctx;
}

const OpProfiler::Row* find(const std::vector<OpProfiler::Row>& rows, const std::string& phase,
                            const std::string& kind) {
  for (const auto& r : rows)
    if (r.phase == phase && r.kind == kind) return &r;
  return nullptr;
}

TEST(OpProfiler, CountsCallsAndTimePerPhaseAndKind) {
  const Context ctx = profiled_context();
  {
    PhaseScope forward(ctx, "forward");
    for (int i = 0; i < 3; ++i) {
      ProfileScope op(ctx, "rmsnorm.fwd");
      sleep_ms(2);
    }
    {
      ProfileScope op(ctx, "gemm");
      sleep_ms(10);
    }
  }
  {
    PhaseScope backward(ctx, "backward");
    ProfileScope op(ctx, "gemm");
    sleep_ms(5);
  }
  const auto rows = ctx.profiler->totals();
  ASSERT_EQ(rows.size(), 3u);
  const auto* norm = find(rows, "forward", "rmsnorm.fwd");
  const auto* gemm_f = find(rows, "forward", "gemm");
  const auto* gemm_b = find(rows, "backward", "gemm");
  ASSERT_TRUE(norm && gemm_f && gemm_b);
  EXPECT_EQ(norm->calls, 3);
  EXPECT_EQ(gemm_f->calls, 1);
  EXPECT_GE(norm->ms, 6.0);
  EXPECT_GE(gemm_f->ms, 10.0);
  EXPECT_GE(gemm_b->ms, 5.0);

  const auto kinds = ctx.profiler->kind_totals();  // largest first
  ASSERT_EQ(kinds.size(), 2u);
  EXPECT_EQ(kinds[0].kind, "gemm");
  EXPECT_EQ(kinds[0].calls, 2);
  EXPECT_DOUBLE_EQ(kinds[0].ms, gemm_f->ms + gemm_b->ms);

  const auto phases = ctx.profiler->phase_totals();
  ASSERT_EQ(phases.size(), 2u);
  const auto* forward = find(phases, "", "forward");
  ASSERT_TRUE(forward);
  EXPECT_EQ(forward->calls, 1);
  EXPECT_GE(forward->ms, norm->ms + gemm_f->ms);
}

TEST(OpProfiler, NestedOpsCountOnceUnderTheOuterKind) {
  const Context ctx = profiled_context();
  {
    ProfileScope outer(ctx, "loss");
    ProfileScope inner(ctx, "gemm");
    sleep_ms(3);
  }
  const auto rows = ctx.profiler->totals();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].kind, "loss");
  EXPECT_EQ(rows[0].phase, "");
  EXPECT_GE(rows[0].ms, 3.0);
}

TEST(OpProfiler, NestedPhasesAreBookedUnderTheirOuterPhase) {
  const Context ctx = profiled_context();
  {
    PhaseScope backward(ctx, "backward");
    PhaseScope recompute(ctx, "recompute");
    ProfileScope op(ctx, "swiglu.fwd");
  }
  EXPECT_TRUE(find(ctx.profiler->totals(), "recompute", "swiglu.fwd"));
  const auto phases = ctx.profiler->phase_totals();
  EXPECT_TRUE(find(phases, "backward", "recompute"));
  EXPECT_TRUE(find(phases, "", "backward"));
}

TEST(OpProfiler, DisabledScopesAreNotRecordedAndResetForgets) {
  const Context ctx = profiled_context();
  ctx.profiler->set_enabled(false);
  {
    PhaseScope phase(ctx, "forward");
    ProfileScope op(ctx, "gemm");
  }
  EXPECT_TRUE(ctx.profiler->totals().empty());
  EXPECT_TRUE(ctx.profiler->phase_totals().empty());
  ctx.profiler->set_enabled(true);
  { ProfileScope op(ctx, "gemm"); }
  EXPECT_EQ(ctx.profiler->totals().size(), 1u);
  { ProfileScope op(ctx, "gemm"); }  // folded on the next read, added to the sums
  EXPECT_EQ(ctx.profiler->totals()[0].calls, 2);
  ctx.profiler->reset();
  EXPECT_TRUE(ctx.profiler->totals().empty());
}

TEST(OpProfiler, OpsTimeThemselvesWhenTheContextHasAProfiler) {
  const Context ctx = profiled_context();
  Tensor y = Tensor::full({64}, 1.0f), x = Tensor::full({64}, 2.0f);
  ops::add_inplace(ctx, y, x);
  ops::scale_inplace(ctx, y, 0.5f);
  ops::add_inplace(ctx, y, x);
  const auto rows = ctx.profiler->kind_totals();
  ASSERT_EQ(rows.size(), 2u);
  const auto* add = find(rows, "", "add");
  ASSERT_TRUE(add);
  EXPECT_EQ(add->calls, 2);
  EXPECT_FLOAT_EQ(y.to_floats()[0], 3.5f);

  const Context plain;  // no profiler: the ops still run
  ops::add_inplace(plain, y, x);
  EXPECT_FLOAT_EQ(y.to_floats()[0], 5.5f);
}

TEST(OpProfiler, TableHasEveryKindUnaccountedAndPhases) {
  const Context ctx = profiled_context();
  {
    PhaseScope phase(ctx, "forward");
    ProfileScope op(ctx, "rope.fwd");
    sleep_ms(2);
  }
  const std::string table = profile_table(*ctx.profiler, 1000.0, 2);
  EXPECT_NE(table.find("| rope.fwd | 0 |"), std::string::npos) << table;  // 1 call / 2 steps
  EXPECT_NE(table.find("| unaccounted |"), std::string::npos) << table;
  EXPECT_NE(table.find("| forward |"), std::string::npos) << table;
  EXPECT_NE(table.find("| forward | rope.fwd |"), std::string::npos) << table;
  testing::expect_error([&] { profile_table(*ctx.profiler, 1.0, 0); }, "steps");
}

TEST(OpProfiler, ReadingWithAnOpenScopeIsAnError) {
  const Context ctx = profiled_context();
  ProfileScope op(ctx, "gemm");
  testing::expect_error([&] { ctx.profiler->totals(); }, "is open");
}

}  // namespace
}  // namespace ulysses
