// Evaluation (train/evaluator.h): the eval loss is the training loss of a forward on the same
// data, does not depend on how the set is batched or packed, is written to metrics.jsonl at
// --eval-steps and at the end; bad eval inputs are refused naming the option.
#include "ulysses/train/evaluator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "ulysses/model/params.h"
#include "ulysses/parallel/attention_strategies.h"
#include "ulysses/train/metrics.h"
#include "ulysses/train/trainer.h"

namespace ulysses::train {
namespace {

const std::string kDocs = std::string(ULYSSES_TEST_DATA) + "/tiny_docs.jsonl";

std::int64_t count_lines(const std::string& path) {
  std::ifstream in(path);
  std::int64_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.empty() ? 0 : 1;
  return n;
}

TrainConfig eval_config() {
  TrainConfig c;
  c.model = "tiny";
  c.data = kDocs;
  c.eval_data = kDocs;
  c.max_seq_length = 64;
  c.max_steps = 2;
  c.learning_rate = 1e-2;
  c.output_dir = "";
  c.quiet = true;
  c.seed = 5;
  return c;
}

std::filesystem::path temp_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(Evaluator, EvalLossIsTheTrainingLossOfAForwardOnTheSameData) {
  // Unpacked, a training batch of every document is exactly one epoch: the step's loss (a
  // forward before the update) is the mean over the same labels as the evaluation's.
  TrainConfig c = eval_config();
  c.packing = false;
  c.per_device_train_batch_size = count_lines(kDocs);
  Trainer trainer(c);
  const EvalMetrics before = trainer.evaluate(0);
  const StepMetrics step = trainer.train_step(1);
  EXPECT_EQ(before.valid_labels, step.valid_labels);
  EXPECT_NEAR(before.loss, step.loss, 1e-12 * step.loss);
  EXPECT_DOUBLE_EQ(before.perplexity, std::exp(before.loss));
  // After the update the weights changed, so does the loss (the evaluation reads live weights).
  const EvalMetrics after = trainer.evaluate(1);
  EXPECT_LT(after.loss, before.loss);
}

TEST(Evaluator, EvalLossEqualsAnIndependentPerDocumentForward) {
  TrainConfig c = eval_config();
  Trainer trainer(c);
  const EvalMetrics m = trainer.evaluate(0);
  // Reference: every document alone through the decoder with resident weights.
  const model::ParamBuffers& params = trainer.params();
  auto attention = parallel::make_local_attention();
  model::Decoder decoder(trainer.model_config(), *attention);
  data::DataOptions d;
  d.data = kDocs;
  d.vocab_size = trainer.model_config().vocab_size;
  d.max_seq_length = c.max_seq_length;  // long documents split as the evaluator splits them
  d.shuffle = false;
  const auto source = data::open_data(d);
  double sum = 0;
  std::int64_t labels = 0;
  for (std::int64_t i = 0; i < source->size(); ++i) {
    data::PackedSequence s;
    data::append_document(s, source->get(i));
    labels += s.valid_labels();
    sum += decoder
               .forward_backward(trainer.context(), params, nullptr, data::make_full_shard(s), 0.0f,
                                 {})
               .loss_sum();
  }
  EXPECT_EQ(m.valid_labels, labels);
  EXPECT_EQ(m.documents, source->size());
  EXPECT_NEAR(m.loss, sum / static_cast<double>(labels), 1e-5 * m.loss);
}

TEST(Evaluator, BatchSizeAndPackingDoNotChangeTheResult) {
  TrainConfig c = eval_config();
  Trainer a(c);
  const EvalMetrics packed = a.evaluate(0);
  c.per_device_eval_batch_size = 3;
  Trainer b(c);
  const EvalMetrics small_batches = b.evaluate(0);
  c.packing = false;
  Trainer u(c);
  const EvalMetrics unpacked = u.evaluate(0);
  EXPECT_EQ(packed.loss, small_batches.loss);  // same sequences, same order of the sums
  EXPECT_NEAR(packed.loss, unpacked.loss, 1e-5 * packed.loss);
  EXPECT_EQ(packed.valid_labels, unpacked.valid_labels);
  EXPECT_LT(packed.sequences, unpacked.sequences);
  EXPECT_EQ(unpacked.sequences, count_lines(kDocs));
  EXPECT_EQ(packed.eval_steps, 1);
  EXPECT_EQ(small_batches.eval_steps, (packed.sequences + 2) / 3);
}

TEST(Evaluator, RunEvaluatesAtEvalStepsAndAtTheEndIntoMetrics) {
  TrainConfig c = eval_config();
  c.max_steps = 5;
  c.eval_steps = 2;
  c.logging_steps = 1;
  const auto dir = temp_dir("ulysses_eval_metrics");
  c.output_dir = dir.string();
  Trainer trainer(c);
  trainer.run();
  std::vector<std::int64_t> eval_steps;
  for (const auto& m : trainer.eval_history()) eval_steps.push_back(m.step);
  EXPECT_EQ(eval_steps, (std::vector<std::int64_t>{2, 4, 5}));
  std::ifstream in(dir / "metrics.jsonl");
  std::vector<std::int64_t> logged;
  int train_lines = 0;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_TRUE(j.contains("timestamp")) << line;
    ASSERT_TRUE(j.contains("epoch")) << line;
    EXPECT_GT(j["epoch"].get<double>(), 0.0) << line;
    if (j.contains("eval_loss")) {
      logged.push_back(j["step"].get<std::int64_t>());
      EXPECT_NEAR(j["eval_perplexity"].get<double>(), std::exp(j["eval_loss"].get<double>()),
                  1e-9 * j["eval_perplexity"].get<double>());
    } else {
      ++train_lines;
      EXPECT_TRUE(j.contains("learning_rate")) << line;
      EXPECT_FALSE(j.contains("lr")) << line;
    }
  }
  EXPECT_EQ(logged, eval_steps);
  EXPECT_EQ(train_lines, 5);
  std::filesystem::remove_all(dir);
}

TEST(Evaluator, BadEvalInputsAreRefusedNamingTheOption) {
  TrainConfig c = eval_config();
  c.eval_data = "/nonexistent/eval.jsonl";
  testing::expect_error([&] { Trainer t(c); }, "--eval-data /nonexistent/eval.jsonl: no such file");
  c.eval_data = "synthetic-copy";
  testing::expect_error([&] { Trainer t(c); }, "--eval-data synthetic-copy: evaluation runs over");
  const auto dir = temp_dir("ulysses_eval_bad");
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "empty.jsonl") << "";
  c.eval_data = (dir / "empty.jsonl").string();
  testing::expect_error([&] { Trainer t(c); }, "--eval-data " + c.eval_data + ": no documents");
  std::ofstream(dir / "single.jsonl") << "{\"input_ids\": [5]}\n{\"input_ids\": [7]}\n";
  c.eval_data = (dir / "single.jsonl").string();
  testing::expect_error([&] { Trainer t(c); }, "no token has a label to predict");
  std::ofstream(dir / "vocab.jsonl") << "{\"input_ids\": [5, 4000]}\n";
  c.eval_data = (dir / "vocab.jsonl").string();
  testing::expect_error([&] { Trainer t(c); }, "vocab.jsonl");
  c.eval_data = "";
  c.eval_steps = 5;
  testing::expect_error([&] { validate(c); }, "--eval-steps 5 needs --eval-data");
  c.eval_steps = -1;
  testing::expect_error([&] { validate(c); }, "--eval-steps must be >= 0");
  c.eval_steps = 0;
  c.per_device_eval_batch_size = 0;
  testing::expect_error([&] { validate(c); }, "--per-device-eval-batch-size must be a positive");
  c.per_device_eval_batch_size = 8;
  Trainer no_eval(c);
  EXPECT_FALSE(no_eval.has_eval_data());
  testing::expect_error([&] { no_eval.evaluate(0); }, "needs --eval-data");
  std::filesystem::remove_all(dir);
}

TEST(Metrics, ResumeCutsMetricsBackToTheResumeStep) {
  const auto dir = temp_dir("ulysses_metrics_cut");
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "metrics.jsonl")
      << "{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2}\n"
         "{\"step\":2,\"eval_loss\":2.5}\n{\"step\":3,\"loss\":1}\n"
         "{\"step\":4,\"eval_loss\":1.5}\n";
  {
    MetricsWriter writer(dir, /*resume_step=*/2);
    StepMetrics m;
    m.step = 3;
    writer.write(m);
  }
  std::ifstream in(dir / "metrics.jsonl");
  std::vector<std::int64_t> steps;
  for (std::string line; std::getline(in, line);)
    steps.push_back(nlohmann::json::parse(line)["step"].get<std::int64_t>());
  EXPECT_EQ(steps, (std::vector<std::int64_t>{1, 2, 2, 3}));
  EXPECT_FALSE(std::filesystem::exists(dir / "metrics.jsonl.tmp"));
  {
    MetricsWriter fresh(dir);  // a fresh run starts the file again
  }
  EXPECT_EQ(std::filesystem::file_size(dir / "metrics.jsonl"), 0u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ulysses::train
