#include "ulysses/train/train_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "ulysses/core/error.h"
#include "ulysses/train/config_file.h"
#include "ulysses/train/schedule.h"

namespace ulysses::train {
namespace {

std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("ulysses_cfg_" + name);
  std::ofstream(path) << text;
  return path;
}

TEST(Schedule, MatchesTransformersFormulas) {
  ScheduleConfig c{ScheduleType::linear, 1.0, 10, 110};
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 0), 0.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 5), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 10), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 60), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 110), 0.0);
  c.type = ScheduleType::cosine;
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 10), 1.0);
  EXPECT_NEAR(learning_rate_at(c, 60), 0.5, 1e-12);
  EXPECT_NEAR(learning_rate_at(c, 35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  c.type = ScheduleType::constant;
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 0), 1.0);
  c.type = ScheduleType::constant_with_warmup;
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 5), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(c, 100), 1.0);
  EXPECT_NE(testing::error_message([&] {
              parse_schedule_type("polynomial");
            }).find("--lr-scheduler-type"),
            std::string::npos);
  EXPECT_EQ(parse_schedule_type("linear"), ScheduleType::linear);
  EXPECT_EQ(parse_schedule_type("cosine"), ScheduleType::cosine);
  EXPECT_EQ(parse_schedule_type("constant"), ScheduleType::constant);
  EXPECT_EQ(parse_schedule_type("constant_with_warmup"), ScheduleType::constant_with_warmup);
  c.warmup_steps = -1;
  EXPECT_NE(testing::error_message([&] { validate_schedule(c); }).find("--warmup-steps"),
            std::string::npos);
}

TEST(ConfigFile, ReadsYamlAndJson) {
  const auto yaml = write_temp("a.yaml", "max_steps: 7\npacking: false\nlearning_rate: 1e-3\n");
  const auto kv = read_config_file(yaml);
  ASSERT_EQ(kv.size(), 3u);
  EXPECT_EQ(kv[0], (std::pair<std::string, std::string>{"max_steps", "7"}));
  EXPECT_EQ(kv[1].second, "false");
  const auto json = write_temp("a.json", R"({"max_steps": 7, "packing": true, "model": "tiny"})");
  const auto kj = read_config_file(json);
  ASSERT_EQ(kj.size(), 3u);
  EXPECT_EQ(kj[1], (std::pair<std::string, std::string>{"packing", "true"}));
}

TEST(ConfigFile, ErrorsNameTheFile) {
  EXPECT_NE(testing::error_message([] {
              read_config_file("/nonexistent/run.yaml");
            }).find("/nonexistent/run.yaml"),
            std::string::npos);
  const auto bad = write_temp("bad.yaml", "max_steps: [1, 2\n");
  EXPECT_NE(testing::error_message([&] { read_config_file(bad); }).find("invalid YAML"),
            std::string::npos);
  const auto nested = write_temp("nested.json", R"({"max_steps": {"a": 1}})");
  EXPECT_NE(testing::error_message([&] { read_config_file(nested); }).find("max_steps"),
            std::string::npos);
  const auto list = write_temp("list.yaml", "- a\n- b\n");
  EXPECT_NE(testing::error_message([&] { read_config_file(list); }).find("mapping"),
            std::string::npos);
  const auto ext = write_temp("x.toml", "a = 1\n");
  EXPECT_NE(testing::error_message([&] { read_config_file(ext); }).find(".toml"),
            std::string::npos);
}

TEST(TrainConfig, NamedChoicesAreParsedOnceAtValidation) {
  EXPECT_EQ(parse_attn_implementation("auto"), AttnImplementation::automatic);
  EXPECT_EQ(parse_attn_implementation("blockwise"), AttnImplementation::blockwise);
  EXPECT_EQ(parse_attn_implementation("cudnn"), AttnImplementation::cudnn);
  EXPECT_EQ(parse_attn_implementation("builtin"), AttnImplementation::builtin);
  TrainConfig c;
  c.attn_implementation = "flash";
  const std::string attn = testing::error_message([&] { validate(c); });
  EXPECT_NE(attn.find("--attn-implementation"), std::string::npos) << attn;
  EXPECT_NE(attn.find("flash"), std::string::npos) << attn;
  c = TrainConfig{};
  c.lr_scheduler_type = "polynomial";
  EXPECT_NE(testing::error_message([&] { validate(c); }).find("--lr-scheduler-type"),
            std::string::npos);
}

TEST(TrainConfig, RejectsNonPositiveSizesNamingTheFlag) {
  TrainConfig c;
  EXPECT_NO_THROW(validate(c));
  c.max_seq_length = 0;
  EXPECT_NE(testing::error_message([&] { validate(c); }).find("--max-seq-length"),
            std::string::npos);
  c = TrainConfig{};
  c.per_device_train_batch_size = -2;
  EXPECT_NE(testing::error_message([&] { validate(c); }).find("--per-device-train-batch-size"),
            std::string::npos);
  c = TrainConfig{};
  c.zero_stage = 4;
  EXPECT_NE(testing::error_message([&] { validate(c); }).find("--zero-stage"), std::string::npos);
  c = TrainConfig{};
  c.sp_size = 0;
  EXPECT_NE(testing::error_message([&] { validate(c); }).find("--sp-size"), std::string::npos);
  c = TrainConfig{};
  c.sp_size = 4;
  c.max_seq_length = 1022;
  EXPECT_NE(testing::error_message([&] { validate(c); }).find("use --max-seq-length 1024"),
            std::string::npos);
  c.packing = false;  // unpacked sequences are padded to a multiple of sp instead
  EXPECT_NO_THROW(validate(c));
}

TEST(TrainConfig, OffloadGradientsNamesWhatItNeeds) {
  auto message = [](const TrainConfig& c) { return testing::error_message([&] { validate(c); }); };
  TrainConfig c;
  c.offload_gradients = true;
  const std::string needs = "--offload-gradients needs --zero-stage 2 or 3 and --offload-optimizer";
  EXPECT_NE(message(c).find(needs), std::string::npos)
      << message(c);
  c.zero_stage = 2;
  EXPECT_NE(message(c).find("without --offload-optimizer"), std::string::npos) << message(c);
  c.offload_optimizer = true;
  EXPECT_NO_THROW(validate(c));
  c.dp_replicate_size = 2;
  EXPECT_NE(message(c).find("--offload-gradients with --dp-replicate-size 2"), std::string::npos)
      << message(c);
}

TEST(TrainConfig, RingAndHybridOptionsNameTheFlag) {
  auto message = [](const TrainConfig& c) { return testing::error_message([&] { validate(c); }); };
  TrainConfig c;
  c.sp_size = 4;
  c.max_seq_length = 1024;
  c.sp_backend = "ring";
  EXPECT_NO_THROW(validate(c));
  EXPECT_EQ(resolved_ring_size(c), 4);
  EXPECT_EQ(sequence_pad_multiple(c), 8);
  c.sp_backend = "hybrid";
  EXPECT_NE(message(c).find("--sp-backend hybrid needs --ring-size"), std::string::npos);
  c.ring_size = 3;
  EXPECT_NE(message(c).find("--ring-size 3 does not divide --sp-size 4"), std::string::npos);
  c.ring_size = 2;
  EXPECT_NO_THROW(validate(c));
  EXPECT_EQ(resolved_ring_size(c), 2);
  c.sp_backend = "ulysses";
  EXPECT_NE(message(c).find("--ring-size 2 needs --sp-backend hybrid"), std::string::npos);
  c.sp_backend = "ring";
  EXPECT_NE(message(c).find("drop --ring-size"), std::string::npos);
  c.sp_backend = "zigzag";
  EXPECT_NE(message(c).find("available: ulysses, ring, hybrid"), std::string::npos);
  c = TrainConfig{};
  c.sp_size = 4;
  c.sp_backend = "ring";
  c.max_seq_length = 1028;  // a multiple of sp, not of 2 x sp
  EXPECT_NE(message(c).find("use --max-seq-length 1032"), std::string::npos);
  c.max_seq_length = 1024;
  c.sp_pipeline = true;
  EXPECT_NE(message(c).find("--sp-pipeline applies to --sp-backend ulysses"), std::string::npos);
}

}  // namespace
}  // namespace ulysses::train
