// Evaluation under every layout equals one rank: run under mpirun with 1, 2 and 4 ranks; every
// rank also evaluates the single-rank reference itself (a self communicator).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "dist_util.h"
#include "train_util.h"
#include "ulysses/train/trainer.h"

namespace ulysses {
namespace {

using testing::world;

const std::string kDocs = std::string(ULYSSES_TEST_DATA) + "/tiny_docs.jsonl";

train::TrainConfig eval_config() {
  train::TrainConfig c;
  c.model = "tiny";  // 4 heads, 2 kv heads: kv split at sp 2, replicated at sp 4
  c.data = kDocs;
  c.eval_data = kDocs;
  c.max_seq_length = 64;
  c.per_device_train_batch_size = 2;
  c.per_device_eval_batch_size = 2;  // several eval steps and padding-only sequences
  c.max_steps = 2;
  c.eval_steps = 1;
  c.learning_rate = 1e-2;
  c.output_dir = "";
  c.quiet = true;
  c.seed = 11;
  return c;
}

struct EvalLayout {
  std::int64_t sp, replicate, zero_stage;
  bool packing;
};

TEST(DistEval, EveryLayoutEqualsSingleRank) {
  const int n = world().size();
  for (const EvalLayout layout :
       {EvalLayout{n, 1, 0, true}, EvalLayout{n, 1, 0, false}, EvalLayout{1, 1, 3, true},
        EvalLayout{2, 1, 3, true}, EvalLayout{2, 2, 2, false}, EvalLayout{1, 2, 1, true}}) {
    if (n % (layout.sp * layout.replicate) != 0) continue;
    train::TrainConfig c = eval_config();
    c.sp_size = layout.sp;
    c.dp_replicate_size = layout.replicate;
    c.zero_stage = layout.zero_stage;
    c.packing = layout.packing;
    const std::int64_t dp = n / layout.sp;
    const std::string what = "sp " + std::to_string(layout.sp) + " dp " + std::to_string(dp) +
                             " replicate " + std::to_string(layout.replicate) + " zero " +
                             std::to_string(layout.zero_stage) +
                             (layout.packing ? " packed" : " unpacked");
    SCOPED_TRACE(what);

    // The same weights: the eval before training equals the single rank's to the contract's
    // 1e-6 (the loss sums are added in another order), the label count exactly.
    auto self = comm::make_self_communicator();
    train::TrainConfig single = c;
    single.sp_size = 1;
    single.dp_replicate_size = 1;
    single.zero_stage = 0;
    single.per_device_train_batch_size = c.per_device_train_batch_size * dp;
    train::Trainer reference(single, *self);
    train::Trainer parallel(c, world());
    const train::EvalMetrics expected = reference.evaluate(0);
    const train::EvalMetrics got = parallel.evaluate(0);
    EXPECT_EQ(got.valid_labels, expected.valid_labels);
    EXPECT_EQ(got.sequences, expected.sequences);
    EXPECT_NEAR(got.loss, expected.loss, 1e-6 * expected.loss);
    EXPECT_NEAR(got.perplexity, expected.perplexity, 1e-6 * expected.perplexity);
    // Every rank holds the same bits (the sums are added in rank order on every rank).
    Tensor mine = Tensor::from_floats({static_cast<float>(got.loss)}, {1});
    Tensor high = mine.clone();
    world().all_reduce(high, comm::ReduceOp::max);
    EXPECT_EQ(high.data<float>()[0], mine.data<float>()[0]);

    // During training (every step and at the end): equal to the single-rank run's evaluations.
    reference.run();
    parallel.run();
    const auto& e = reference.eval_history();
    const auto& g = parallel.eval_history();
    ASSERT_EQ(g.size(), e.size());
    ASSERT_EQ(g.size(), 3u);  // step 0 (above), 1 and 2 (= the end: not repeated)
    for (std::size_t i = 0; i < g.size(); ++i) {
      EXPECT_EQ(g[i].step, e[i].step);
      EXPECT_NEAR(g[i].loss, e[i].loss, 1e-5 * e[i].loss) << "evaluation " << i;
    }
  }
}

}  // namespace
}  // namespace ulysses
