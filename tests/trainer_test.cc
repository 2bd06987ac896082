// Trainer-level properties: gradient checkpointing and accumulation do not change training,
// runs are deterministic, and metrics/checkpoints are written.
#include "ulysses/train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "ulysses/comm/communicator.h"
#include "ulysses/train/trainer.h"

namespace ulysses::train {
namespace {

TrainConfig small_config() {
  TrainConfig c;
  c.model = "tiny";
  c.max_seq_length = 128;
  c.per_device_train_batch_size = 4;
  c.max_steps = 3;
  c.learning_rate = 3e-3;
  c.warmup_steps = 1;
  c.weight_decay = 0.1;
  c.output_dir = "";
  c.quiet = true;
  c.copy_min_length = 10;
  c.copy_max_length = 30;
  return c;
}

std::vector<double> losses(const TrainConfig& config, std::vector<float>* final_params = nullptr) {
  Trainer trainer(config);
  std::vector<double> out;
  for (const auto& m : trainer.run()) out.push_back(m.loss);
  if (final_params) {
    final_params->clear();
    for (const auto& flat : trainer.params().flat()) {
      const auto v = flat.to_floats();
      final_params->insert(final_params->end(), v.begin(), v.end());
    }
  }
  return out;
}

TEST(Trainer, GradientCheckpointingGivesBitwiseIdenticalLosses) {
  TrainConfig plain = small_config();
  TrainConfig checkpointed = plain;
  checkpointed.gradient_checkpointing = true;
  std::vector<float> p1, p2;
  EXPECT_EQ(losses(plain, &p1), losses(checkpointed, &p2));
  EXPECT_EQ(p1, p2);
}

TEST(Trainer, SameSeedSameBitsOtherSeedOtherLosses) {
  TrainConfig c = small_config();
  EXPECT_EQ(losses(c), losses(c));
  TrainConfig other = c;
  other.seed = 7;
  EXPECT_NE(losses(c), losses(other));
}

TEST(Trainer, GradientAccumulationEqualsOneLargeBatch) {
  // 4 sequences in one micro-step == 2 micro-steps of 2: the loss is weighted by all valid
  // labels of the step in both cases.
  TrainConfig big = small_config();
  TrainConfig accumulated = big;
  accumulated.per_device_train_batch_size = 2;
  accumulated.gradient_accumulation_steps = 2;
  std::vector<float> p1, p2;
  const auto a = losses(big, &p1);
  const auto b = losses(accumulated, &p2);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * a[i]);
  ASSERT_EQ(p1.size(), p2.size());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < p1.size(); ++i) {
    diff += (p1[i] - p2[i]) * static_cast<double>(p1[i] - p2[i]);
    norm += p1[i] * static_cast<double>(p1[i]);
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-5);
}

TEST(Trainer, WritesMetricsAndCheckpoints) {
  TrainConfig c = small_config();
  c.output_dir = (std::filesystem::temp_directory_path() / "ulysses_trainer_test").string();
  std::filesystem::remove_all(c.output_dir);
  c.save_steps = 2;
  c.logging_steps = 1;
  Trainer trainer(c);
  const auto history = trainer.run();
  ASSERT_EQ(history.size(), 3u);
  for (const auto& m : history) {
    EXPECT_TRUE(std::isfinite(m.loss));
    EXPECT_GT(m.valid_labels, 0);
    EXPECT_EQ(m.tokens, 4 * 128);
  }
  std::ifstream metrics(std::filesystem::path(c.output_dir) / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  EXPECT_EQ(lines, 3);
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(c.output_dir) / "checkpoint-2" /
                                      "model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(c.output_dir) / "config.json"));
  std::filesystem::remove_all(c.output_dir);
}

TEST(Trainer, SlidingWindowShorterThanSequenceIsRefused) {
  const auto dir = std::filesystem::temp_directory_path() / "ulysses_sliding";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"model_type": "mistral", "hidden_size": 16,
    "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "vocab_size": 64, "sliding_window": 64})";
  TrainConfig c = small_config();
  c.model = dir.string();
  try {
    Trainer trainer(c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sliding_window"), std::string::npos) << e.what();
  }
  c.max_seq_length = 64;
  EXPECT_NO_THROW(Trainer{c});
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ulysses::train

namespace ulysses::train {
namespace {

std::vector<float> all_params(Trainer& trainer) {
  std::vector<float> out;
  for (const auto& flat : trainer.params().flat()) {
    const auto v = flat.to_floats();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

TEST(Trainer, ResumeContinuesBitExactly) {
  TrainConfig c = small_config();
  c.max_steps = 6;
  c.output_dir = (std::filesystem::temp_directory_path() / "ulysses_resume_test").string();
  std::filesystem::remove_all(c.output_dir);
  // Straight through.
  TrainConfig straight = c;
  straight.output_dir = c.output_dir + "/straight";
  Trainer a(straight);
  const auto history = a.run();
  // Three steps, checkpoint, "exit" (the trainer is destroyed), resume, three more.
  {
    Trainer first(c);
    for (std::int64_t s = 1; s <= 3; ++s) first.train_step(s);
    first.save_checkpoint(3);
  }
  TrainConfig again = c;
  again.resume_from_checkpoint = "latest";
  Trainer second(again);
  const auto rest = second.run();
  ASSERT_EQ(rest.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(rest[i].step, history[i + 3].step);
    EXPECT_EQ(rest[i].loss, history[i + 3].loss);  // bitwise
  }
  EXPECT_EQ(all_params(second), all_params(a));
  // The checkpoint folder is complete and holds loadable HF weights too.
  const auto dir = std::filesystem::path(c.output_dir) / "checkpoint-3";
  EXPECT_TRUE(std::filesystem::exists(dir / "COMPLETE"));
  EXPECT_TRUE(std::filesystem::exists(dir / "model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir / "config.json"));
  std::filesystem::remove_all(c.output_dir);
}

TEST(Trainer, ResumeRefusesAnotherModelAndIncompleteFolders) {
  TrainConfig c = small_config();
  c.output_dir = (std::filesystem::temp_directory_path() / "ulysses_resume_refuse").string();
  std::filesystem::remove_all(c.output_dir);
  {
    Trainer t(c);
    t.train_step(1);
    t.save_checkpoint(1);
  }
  const auto other_model = std::filesystem::path(c.output_dir) / "other-model";
  std::filesystem::create_directories(other_model);
  std::ofstream(other_model / "config.json") << R"({"model_type": "qwen3", "hidden_size": 32,
    "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 128})";
  TrainConfig other = c;
  other.model = other_model.string();
  other.resume_from_checkpoint = c.output_dir + "/checkpoint-1";
  try {
    Trainer t(other);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint-1"), std::string::npos) << e.what();
  }
  std::filesystem::remove(std::filesystem::path(c.output_dir) / "checkpoint-1" / "COMPLETE");
  TrainConfig incomplete = c;
  incomplete.resume_from_checkpoint = c.output_dir + "/checkpoint-1";
  try {
    Trainer t(incomplete);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("COMPLETE"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(c.output_dir);
}

// A world of one rank is a group of size one: every ZeRO stage and offload trains there, on
// the self communicator and on an MPI world of one (whose groups are copies on any device),
// with the same bits as stage 0 at stage 1 (Z = 1: the shards are the whole buffers) and within
// rounding at stages 2-3 (each backward's gradients are summed in a fresh buffer before they
// are added to the shard: another addition order).
TEST(Trainer, EveryZeroStageAndOffloadTrainsOnAWorldOfOne) {
  TrainConfig base = small_config();
  base.max_steps = 3;
  std::vector<float> expected_params;
  const std::vector<double> expected = losses(base, &expected_params);
  auto mpi = comm::make_mpi_world();
  struct Variant {
    int stage;
    bool offload_optimizer, offload_params;
  };
  for (const Variant v : {Variant{1, false, false}, Variant{2, false, false},
                          Variant{3, false, false}, Variant{1, true, false},
                          Variant{3, true, true}}) {
    TrainConfig c = base;
    c.zero_stage = v.stage;
    c.offload_optimizer = v.offload_optimizer;
    c.offload_params = v.offload_params;
    const std::string what = "stage " + std::to_string(v.stage) +
                             (v.offload_optimizer ? " +offload-optimizer" : "") +
                             (v.offload_params ? " +offload-params" : "");
    const double tolerance = v.stage >= 2 ? 1e-6 : 0.0;
    std::vector<float> params;
    const std::vector<double> got = losses(c, &params);
    ASSERT_EQ(got.size(), expected.size()) << what;
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], expected[i], tolerance * expected[i]) << what << " step " << i + 1;
    ASSERT_EQ(params.size(), expected_params.size()) << what;
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
      diff += (params[i] - expected_params[i]) * (params[i] - expected_params[i]);
      norm += expected_params[i] * expected_params[i];
    }
    EXPECT_LE(std::sqrt(diff / norm), v.stage >= 2 ? 1e-5 : 0.0) << what;
    if (mpi->size() == 1) {
      Trainer trainer(c, *mpi);
      const auto history = trainer.run();
      ASSERT_EQ(history.size(), got.size()) << what;
      for (std::size_t i = 0; i < history.size(); ++i)
        EXPECT_EQ(history[i].loss, got[i]) << what << " (MPI world of one), step " << i + 1;
    }
  }
}

TEST(Trainer, ResumeRefusesADataOrderChangeAndWarnsAboutOthers) {
  TrainConfig c = small_config();
  c.output_dir = (std::filesystem::temp_directory_path() / "ulysses_resume_changed").string();
  std::filesystem::remove_all(c.output_dir);
  {
    Trainer t(c);
    t.train_step(1);
    t.save_checkpoint(1);
  }
  TrainConfig other_seed = c;
  other_seed.seed = c.seed + 1;
  other_seed.resume_from_checkpoint = "latest";
  const auto refused = [](const TrainConfig& config) {
    try {
      Trainer t(config);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string message = refused(other_seed);
  EXPECT_NE(message.find("seed: 42 -> 43 (data order)"), std::string::npos) << message;
  EXPECT_NE(message.find("--ignore-data-order-change"), std::string::npos) << message;
  TrainConfig longer = c;
  longer.max_seq_length = c.max_seq_length * 2;
  longer.resume_from_checkpoint = "latest";
  message = refused(longer);
  EXPECT_NE(message.find("max_seq_length"), std::string::npos) << message;
  // Allowed when asked; another learning rate is only a warning.
  other_seed.ignore_data_order_change = true;
  EXPECT_EQ(refused(other_seed), "");
  TrainConfig other_lr = c;
  other_lr.learning_rate = c.learning_rate * 2;
  other_lr.resume_from_checkpoint = "latest";
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(refused(other_lr), "");
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("learning_rate"), std::string::npos) << log;
  std::filesystem::remove_all(c.output_dir);
}

// A step whose loss or gradient norm is not finite changes nothing: the weights after it are
// the weights before it; --max-skipped-steps such steps in a row stop the run with a message.
TEST(Trainer, NonFiniteStepsAreSkippedThenTheRunStops) {
  TrainConfig c = small_config();
  c.learning_rate = 1e30;  // step 1's update makes the weights huge: step 2 overflows
  c.warmup_steps = 0;
  c.max_grad_norm = 0;
  c.max_skipped_steps = 2;
  c.max_steps = 1;
  Trainer after_one(c);
  after_one.run();
  const std::vector<float> weights_after_one = after_one.params().flat()[1].to_floats();
  c.max_steps = 2;
  Trainer trainer(c);
  EXPECT_FALSE(trainer.train_step(1).skipped);
  const StepMetrics second = trainer.train_step(2);
  EXPECT_TRUE(second.skipped);
  EXPECT_FALSE(std::isfinite(second.loss) && std::isfinite(second.grad_norm));
  EXPECT_EQ(trainer.params().flat()[1].to_floats(), weights_after_one);
  try {
    trainer.train_step(3);
    ADD_FAILURE() << "a second non-finite step in a row did not stop the run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--max-skipped-steps 2"), std::string::npos) << e.what();
  }
}

// A CPU run whose plan exceeds the host's available memory stops before allocating, naming
// the options (it used to grow until the machine ran out).
TEST(Trainer, CpuRunLargerThanHostMemoryIsRefusedBeforeAllocating) {
  TrainConfig c = small_config();
  c.max_seq_length = std::int64_t{1} << 28;
  c.per_device_train_batch_size = 1;
  try {
    Trainer trainer(c);
    ADD_FAILURE() << "a 2^28-token CPU run was accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("of host memory per rank"), std::string::npos) << message;
    EXPECT_NE(message.find("--max-seq-length 268435456"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace ulysses::train
