// Evaluation on several GPUs (NCCL) equals one GPU: sp over all ranks, and dp with ZeRO-3
// (gathered weights), on a small qwen3-like model (head_dim 64). Every rank evaluates the
// single-GPU reference on its own GPU first. The CPU proof of exactness is tests/dist/eval_test.cc;
// here the layouts add only another order of bf16 additions in the exchanges.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cuda_dist_util.h"
#include "ulysses/core/rng.h"
#include "ulysses/train/trainer.h"

namespace ulysses {
namespace {

using testing::world;

std::string private_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("ulysses_cuda_dist_eval_r" + std::to_string(world().rank()) + "_" + name))
      .string();
}

std::string model_dir() {
  const auto dir = private_path("model");
  std::filesystem::create_directories(dir);
  std::ofstream(std::filesystem::path(dir) / "config.json")
      << R"({"model_type": "qwen3", "hidden_size": 256, "intermediate_size": 512,
       "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
       "head_dim": 64, "vocab_size": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000,
       "tie_word_embeddings": false})";
  return dir;
}

// 24 documents of 20..300 random tokens (the same file on every rank).
std::string docs_file() {
  const auto path = private_path("docs.jsonl");
  std::ofstream out(path);
  Rng rng(23);
  for (int d = 0; d < 24; ++d) {
    const auto n = 20 + static_cast<int>(rng.below(281));
    out << "{\"input_ids\": [";
    for (int i = 0; i < n; ++i) out << (i ? ", " : "") << 2 + rng.below(254);
    out << "]}\n";
  }
  return path;
}

TEST(CudaDistEval, LayoutsEqualOneGpu) {
  train::TrainConfig c;
  c.model = model_dir();
  c.device = "cuda";
  c.data = c.eval_data = docs_file();
  c.max_seq_length = 512;
  c.per_device_eval_batch_size = 2;
  c.output_dir = "";
  c.quiet = true;
  c.seed = 11;
  auto self = comm::make_self_communicator();
  train::Trainer reference(c, *self);
  const train::EvalMetrics expected = reference.evaluate(0);
  struct Layout {
    std::int64_t sp, zero_stage;
  };
  for (const Layout layout : {Layout{world().size(), 0}, Layout{1, 3}}) {
    train::TrainConfig parallel = c;
    parallel.sp_size = layout.sp;
    parallel.zero_stage = layout.zero_stage;
    SCOPED_TRACE("sp " + std::to_string(layout.sp) + " zero " + std::to_string(layout.zero_stage));
    train::Trainer trainer(parallel, world());
    const train::EvalMetrics got = trainer.evaluate(0);
    EXPECT_EQ(got.valid_labels, expected.valid_labels);
    EXPECT_NEAR(got.loss, expected.loss, 1e-3 * expected.loss);
  }
}

}  // namespace
}  // namespace ulysses
