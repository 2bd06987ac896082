// The saved folder is a complete Hugging Face model: config.json passed through from the input
// directory (only dtype rewritten), tokenizer files and generation_config.json copied; presets
// get a generated config.json and a minimal generation_config.json.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "ulysses/io/hf_checkpoint.h"
#include "ulysses/io/tokenizer.h"
#include "ulysses/model/config.h"

namespace ulysses {
namespace {

namespace fs = std::filesystem;
const fs::path kData(ULYSSES_TEST_DATA);

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_all(p)); }

class HfOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("ulysses_hf_output_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "in");
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(HfOutput, DirectoryInputIsPassedThroughWithTokenizerFiles) {
  const fs::path in = root_ / "in";
  for (const char* f : {"model.safetensors", "generation_config.json"})
    fs::copy_file(kData / "golden" / "llama" / f, in / f);
  nlohmann::json config = read_json(kData / "golden" / "llama" / "config.json");
  config.erase("dtype");
  config["torch_dtype"] = "bfloat16";  // deprecated spelling: must become dtype
  config["pad_token_id"] = 3;
  config["eos_token_id"] = nlohmann::json::array({2, 5});
  config["layer_types"] = {"full_attention", "full_attention"};
  config["use_cache"] = true;
  config["some_future_key"] = {{"nested", 1}};
  std::ofstream(in / "config.json") << config.dump(2);
  fs::copy_file(kData / "tokenizer" / "llama3" / "tokenizer.json", in / "tokenizer.json");
  std::ofstream(in / "tokenizer_config.json") << R"({"bos_token": "<|begin_of_text|>"})";
  std::ofstream(in / "special_tokens_map.json") << R"({"bos_token": "<|begin_of_text|>"})";
  std::ofstream(in / "chat_template.jinja") << "{% for m in messages %}{{ m.content }}{% endfor %}";

  const model::ModelConfig mc = model::resolve_model_config(in.string());
  model::ParamBuffers params(mc);
  io::load_hf_weights(in, params);
  const fs::path out = root_ / "out";
  io::save_hf_checkpoint(out, params, DType::bf16, io::kDefaultMaxShardBytes, in.string());

  nlohmann::json expected = config;
  expected.erase("torch_dtype");
  expected["dtype"] = "bfloat16";
  EXPECT_EQ(read_json(out / "config.json"), expected);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                        "chat_template.jinja", "generation_config.json"})
    EXPECT_EQ(read_all(out / f), read_all(in / f)) << f;
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_FALSE(e.path().string().ends_with(".tmp")) << "temporary left: " << e.path();

  // Round trip: the saved folder loads as the same model and tokenizer.
  const model::ModelConfig again = model::resolve_model_config(out.string());
  EXPECT_EQ(model::model_config_to_json(again).dump(), model::model_config_to_json(mc).dump());
  const auto tok_in = io::Tokenizer::load(in), tok_out = io::Tokenizer::load(out);
  EXPECT_EQ(tok_out.encode("Hello 世界 <|eot_id|> 123"),
            tok_in.encode("Hello 世界 <|eot_id|> 123"));
  model::ParamBuffers reloaded(again);
  io::load_hf_weights(out, reloaded);
}

TEST_F(HfOutput, PresetGetsGeneratedConfigAndGenerationConfig) {
  const model::ModelConfig mc = model::resolve_model_config("tiny");
  model::ParamBuffers params(mc);
  const fs::path out = root_ / "tiny";
  io::save_hf_checkpoint(out, params, DType::f32, io::kDefaultMaxShardBytes, "tiny");
  const auto config = read_json(out / "config.json");
  EXPECT_FALSE(config.contains("torch_dtype"));
  EXPECT_EQ(config.at("dtype"), "float32");
  EXPECT_EQ(config.at("use_cache"), true);
  const auto generation = read_json(out / "generation_config.json");
  EXPECT_EQ(generation.value("bos_token_id", std::int64_t{-1}), mc.bos_token_id);
  EXPECT_EQ(generation.value("eos_token_id", std::int64_t{-1}), mc.eos_token_id);
  EXPECT_FALSE(fs::exists(out / "tokenizer.json"));
  auto saved = model::model_config_to_json(model::resolve_model_config(out.string()));
  auto original = model::model_config_to_json(mc);
  EXPECT_EQ(saved.at("torch_dtype"), "float32");  // the saved dtype, read back from "dtype"
  saved.erase("torch_dtype");
  original.erase("torch_dtype");
  EXPECT_EQ(saved, original);
}

}  // namespace
}  // namespace ulysses
