// Hardened parsers: deep nesting and oversized values are refused before the JSON/YAML library
// recurses, values echoed in messages are truncated, trainer_state.json fields are range-checked
// and token ids / labels are checked at open with file and line.
#include "ulysses/core/parse_limits.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "test_util.h"
#include "ulysses/data/source.h"
#include "ulysses/io/safetensors.h"
#include "ulysses/model/config.h"
#include "ulysses/train/checkpoint.h"
#include "ulysses/train/config_file.h"

namespace ulysses {
namespace {

namespace fs = std::filesystem;
using testing::error_message;
using testing::expect_error;

class ParseLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ulysses_parse_limits_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return dir_ / name;
  }
  fs::path dir_;
};

std::string nested(std::size_t depth) {
  return "{\"a\": " + std::string(depth, '[') + std::string(depth, ']') + "}";
}

TEST(NestingDepth, CountsBracketsOutsideStrings) {
  EXPECT_NO_THROW(check_nesting_depth("[[1, {\"a\": [2]}]]", "x", 4));
  expect_error([] { check_nesting_depth("[[[[[1]]]]]", "f.json", 4); }, "f.json: nesting deeper");
  // Brackets inside strings (with escaped quotes) do not count.
  EXPECT_NO_THROW(check_nesting_depth("[\"[[[[[\\\"[[[[[\"]", "x", 1));
  EXPECT_NO_THROW(check_nesting_depth("['[[[[[[']", "x", 1, /*yaml_quotes=*/true));
}

TEST(TruncateForMessage, KeepsShortValuesAndCutsLongOnes) {
  EXPECT_EQ(truncate_for_message("short"), "short");
  const std::string cut = truncate_for_message(std::string(50'000'000, 'x'));
  EXPECT_LT(cut.size(), 200u);
  EXPECT_NE(cut.find("50000000 bytes"), std::string::npos) << cut;
}

TEST_F(ParseLimits, DeeplyNestedConfigJsonIsRefused) {
  const fs::path path = write("config.json", nested(100'000));
  expect_error([&] { model::load_model_config(path); }, "nesting deeper than");
}

TEST_F(ParseLimits, DeeplyNestedSafetensorsHeaderIsRefused) {
  const std::string header = nested(100'000);
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  const fs::path path = write("model.safetensors", bytes + header);
  const std::string message = error_message([&] { io::SafetensorsReader reader(path); });
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  EXPECT_NE(message.find("nesting deeper than"), std::string::npos) << message;
}

TEST_F(ParseLimits, DeeplyNestedConfigFilesAreRefused) {
  expect_error([&] { train::read_config_file(write("run.json", nested(100'000))); },
               "nesting deeper than");
  expect_error(
      [&] { train::read_config_file(write("run.yaml", "a: " + std::string(100'000, '['))); },
      "nesting deeper than");
}

TEST_F(ParseLimits, DuplicateConfigKeysAreErrors) {
  expect_error(
      [&] { train::read_config_file(write("d.yaml", "max_steps: 2\nseed: 1\nmax_steps: 3\n")); },
      "key 'max_steps' appears more than once (line 3)");
  expect_error([&] { train::read_config_file(write("d.json", "{\"seed\": 1, \"seed\": 2}")); },
               "key 'seed' appears more than once");
}

TEST_F(ParseLimits, DeeplyNestedJsonlLineIsRefusedWithFileAndLine) {
  const fs::path path = write("deep.jsonl", "{\"input_ids\": [1, 2]}\n" + nested(100'000) + "\n");
  expect_error([&] { data::make_jsonl_source(path.string(), 16); },
               path.string() + ":2: nesting deeper than");
}

TEST_F(ParseLimits, TokenIdsMustBeIntegersInsideTheVocabulary) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[1, 1.5]", "\"input_ids\"[1] is 1.5: token ids must be integers"},
      {"[true]", "\"input_ids\"[0] is true: token ids must be integers"},
      {"[4294967297]", "token id 4294967297 is outside the vocabulary"},
      {"[-9223372036854775808]", "token id -9223372036854775808 is outside the vocabulary"},
      {"[18446744073709551615]", "token id 18446744073709551615 is outside the vocabulary"},
      {"[-100]", "token id -100 is outside the vocabulary"},  // -100 only as a label
  };
  for (const auto& [ids, fragment] : cases) {
    const fs::path path =
        write("ids.jsonl", "{\"input_ids\": [3]}\n{\"input_ids\": " + ids + "}\n");
    expect_error([&] { data::make_jsonl_source(path.string(), 16); }, path.string() + ":2: ");
    expect_error([&] { data::make_jsonl_source(path.string(), 16); }, fragment);
  }
}

TEST_F(ParseLimits, LabelsMustBeIgnoreIndexOrInsideTheVocabulary) {
  const fs::path ok = write("ok.jsonl", "{\"input_ids\": [1, 2], \"labels\": [-100, 2]}\n");
  EXPECT_NO_THROW(data::make_jsonl_source(ok.string(), 16));
  const fs::path bad = write("bad.jsonl", "{\"input_ids\": [1, 2], \"labels\": [-5, 2]}\n");
  expect_error([&] { data::make_jsonl_source(bad.string(), 16); },
               bad.string() + ":1: \"labels\"[0]: token id -5 is outside the vocabulary");
  const fs::path big = write("big.jsonl", "{\"input_ids\": [1, 2], \"labels\": [1, 16]}\n");
  expect_error([&] { data::make_jsonl_source(big.string(), 16); },
               big.string() + ":1: \"labels\"[1]: token id 16");
}

nlohmann::json valid_state() {
  train::TrainingState state;
  state.step = 4;
  state.data_position = 40;
  state.world_size = 4;
  state.sp_size = 2;
  state.dp_shard_size = 2;
  state.model_fingerprint = "m";
  state.extra = {{"updates", 4}};
  return train::training_state_to_json(state);
}

TEST(TrainerState, EveryFieldIsRangeChecked) {
  EXPECT_NO_THROW(train::training_state_from_json(valid_state(), "s.json"));
  const std::vector<std::pair<std::string, nlohmann::json>> bad = {
      {"data_position", -1}, {"step", -3},          {"world_size", 0}, {"sp_size", 0},
      {"sp_size", 8},        {"dp_shard_size", -2}, {"zero_stage", 4}, {"dp_replicate_size", 0}};
  for (const auto& [key, value] : bad) {
    nlohmann::json state = valid_state();
    state[key] = value;
    expect_error([&] { train::training_state_from_json(state, "s.json"); },
                 "s.json: field \"" + key + "\"");
  }
  nlohmann::json layout = valid_state();
  layout["dp_shard_size"] = 1;  // 2 x 1 x 1 != 4
  expect_error([&] { train::training_state_from_json(layout, "s.json"); }, "is not world_size 4");
  nlohmann::json updates = valid_state();
  updates["extra"]["updates"] = 99;
  expect_error([&] { train::training_state_from_json(updates, "s.json"); }, "extra.updates");
  nlohmann::json extra = valid_state();
  extra["extra"] = 5;
  expect_error([&] { train::training_state_from_json(extra, "s.json"); }, "\"extra\"");
  nlohmann::json huge = valid_state();
  huge["format"] = std::string(10'000'000, 'f');
  EXPECT_LT(error_message([&] { train::training_state_from_json(huge, "s.json"); }).size(), 400u);
}

TEST_F(ParseLimits, DeeplyNestedTrainerStateIsRefused) {
  auto world = comm::make_self_communicator();
  train::TrainingState state;
  state.model_fingerprint = "m";
  const fs::path saved = train::save_training_checkpoint(*world, dir_, state, {});
  write(saved.filename().string() + "/trainer_state.json", nested(100'000));
  expect_error([&] { train::load_training_checkpoint(*world, saved, state); },
               "trainer_state.json: nesting deeper than");
}

}  // namespace
}  // namespace ulysses
