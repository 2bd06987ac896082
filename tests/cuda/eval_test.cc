// Evaluation on one GPU (train/evaluator.h): the bf16 eval loss follows the CPU fp32 one, equals
// the loss of a training step's forward on the same data, and ZeRO-3 (gathered weights) gives
// ZeRO-0's value. Multi-rank equality is proven on the CPU (tests/dist/eval_test.cc).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cuda_test_util.h"
#include "ulysses/core/rng.h"
#include "zero_train_util.h"

namespace ulysses::train {
namespace {

// 16 documents of 20..200 random tokens in [2, 256) as {"input_ids"} lines.
std::string write_docs() {
  const auto path = std::filesystem::temp_directory_path() /
                    ("ulysses_cuda_eval_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream out(path);
  Rng rng(17);
  for (int d = 0; d < 16; ++d) {
    const auto n = 20 + static_cast<int>(rng.below(181));
    out << "{\"input_ids\": [";
    for (int i = 0; i < n; ++i) out << (i ? ", " : "") << 2 + rng.below(254);
    out << "]}\n";
  }
  return path.string();
}

TEST(CudaEval, FollowsTheCpuAndEqualsTheTrainingForward) {
  UL_REQUIRE_GPU();
  const std::string docs = write_docs();
  TrainConfig c = testing::zero_train_config(
      testing::write_model_json(testing::zero_test_model(false), "eval"));
  c.data = docs;
  c.eval_data = docs;
  c.packing = false;  // one document per sequence: a batch of 16 is exactly one epoch
  c.per_device_train_batch_size = 16;
  c.per_device_eval_batch_size = 3;

  Trainer gpu(c);
  const EvalMetrics on_gpu = gpu.evaluate(0);
  TrainConfig cpu_config = c;
  cpu_config.device = "cpu";
  Trainer cpu(cpu_config);
  const EvalMetrics on_cpu = cpu.evaluate(0);
  EXPECT_EQ(on_gpu.valid_labels, on_cpu.valid_labels);
  EXPECT_NEAR(on_gpu.loss, on_cpu.loss, 1e-2 * on_cpu.loss) << "bf16 vs fp32";

  TrainConfig zero3 = c;
  zero3.zero_stage = 3;
  Trainer sharded(zero3);
  EXPECT_NEAR(sharded.evaluate(0).loss, on_gpu.loss, 1e-6 * on_gpu.loss) << "ZeRO-3 vs ZeRO-0";

  // The training step's loss is a forward of the same bf16 weights over the same labels.
  const StepMetrics step = gpu.train_step(1);
  EXPECT_EQ(step.valid_labels, on_gpu.valid_labels);
  EXPECT_NEAR(step.loss, on_gpu.loss, 1e-3 * on_gpu.loss);
  const EvalMetrics after = gpu.evaluate(1);
  EXPECT_TRUE(std::isfinite(after.loss));
  EXPECT_NE(after.loss, on_gpu.loss) << "the evaluation must read the updated weights";
  std::filesystem::remove(docs);
}

}  // namespace
}  // namespace ulysses::train
