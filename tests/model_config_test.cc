#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ulysses/model/config.h"

namespace ulysses::model {
namespace {

using nlohmann::json;

const std::filesystem::path kConfigs = std::filesystem::path(ULYSSES_TEST_DATA) / "configs";
const char* kConfigFiles[] = {"llama.json", "llama31.json", "qwen2.json",
                              "qwen3.json", "mistral.json", "transformers5_rope_parameters.json"};

// Field-by-field equality, so a failing round trip names the field.
void expect_same(const ModelConfig& a, const ModelConfig& b, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope.theta, b.rope.theta);
  EXPECT_EQ(a.rope.type, b.rope.type);
  EXPECT_EQ(a.rope.factor, b.rope.factor);
  EXPECT_EQ(a.rope.low_freq_factor, b.rope.low_freq_factor);
  EXPECT_EQ(a.rope.high_freq_factor, b.rope.high_freq_factor);
  EXPECT_EQ(a.rope.original_max_position_embeddings, b.rope.original_max_position_embeddings);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.o_bias, b.o_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
}

// Expects parse_model_config(json) to throw Error whose message contains every fragment.
void expect_refused(const std::string& text, const std::vector<std::string>& fragments) {
  SCOPED_TRACE(text);
  try {
    parse_model_config(json::parse(text), "inline.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("inline.json"), std::string::npos) << message;
    for (const auto& fragment : fragments)
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "missing '" << fragment << "' in " << message;
  }
}

// A valid qwen3 config with `patch` merged over it.
std::string qwen3_with(const std::string& patch) {
  json base = json::parse(R"({"model_type": "qwen3", "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "vocab_size": 100})");
  base.merge_patch(json::parse(patch));
  return base.dump();
}

TEST(ModelConfig, ParsesLlama3) {
  const ModelConfig c = load_model_config(kConfigs / "llama.json");
  EXPECT_EQ(c.model_type, ModelType::llama);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // 4096 / 32: absent from the file
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope.type, ops::RopeType::default_);
  EXPECT_EQ(c.rope.theta, 500000.0);
  EXPECT_FALSE(c.tie_word_embeddings || c.qkv_bias || c.o_bias || c.qk_norm);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_id, 128001);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  // Same architecture as the preset (the preset was written from the published config).
  expect_same(c, preset_config("llama-3-8b"), "llama.json vs preset");
}

TEST(ModelConfig, ParsesLlama31RopeScaling) {
  const ModelConfig c = load_model_config(kConfigs / "llama31.json");
  EXPECT_EQ(c.rope.type, ops::RopeType::llama3);
  EXPECT_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.factor, 32.0);
  EXPECT_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.eos_token_id, -1);  // a list in the file: not stored
}

TEST(ModelConfig, ParsesQwen2WithHardcodedBiases) {
  const ModelConfig c = load_model_config(kConfigs / "qwen2.json");
  EXPECT_EQ(c.model_type, ModelType::qwen2);
  EXPECT_EQ(c.head_dim, 64);  // 896 / 14
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_window, 0);  // present but use_sliding_window is false
  EXPECT_EQ(c.rope.theta, 1e6);
}

TEST(ModelConfig, ParsesQwen3MatchingPreset) {
  const ModelConfig c = load_model_config(kConfigs / "qwen3.json");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.head_dim, 128);  // explicit: differs from 1024 / 16
  expect_same(c, preset_config("qwen3-0.6b"), "qwen3.json vs preset");
}

TEST(ModelConfig, ParsesMistralSlidingWindow) {
  const ModelConfig c = load_model_config(kConfigs / "mistral.json");
  EXPECT_EQ(c.model_type, ModelType::mistral);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.head_dim, 128);  // null in the file
  EXPECT_EQ(c.vocab_size, 32768);
  EXPECT_FALSE(c.qk_norm);
  const ModelConfig no_window = parse_model_config(
      json::parse(R"({"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10,
        "sliding_window": null})"),
      "inline.json");
  EXPECT_EQ(no_window.sliding_window, 0);
  EXPECT_EQ(no_window.num_key_value_heads, 4);
  EXPECT_EQ(no_window.max_position_embeddings, 2048);
  EXPECT_EQ(no_window.rms_norm_eps, 1e-6);
  EXPECT_EQ(no_window.rope.theta, 10000.0);
}

TEST(ModelConfig, ParsesTransformers5RopeParameters) {
  const ModelConfig c = load_model_config(kConfigs / "transformers5_rope_parameters.json");
  EXPECT_EQ(c.rope.type, ops::RopeType::linear);
  EXPECT_EQ(c.rope.factor, 2.0);
  EXPECT_EQ(c.rope.theta, 250000.0);
  EXPECT_EQ(c.torch_dtype, "float32");  // the "dtype" spelling
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_EQ(c.head_dim, 32);
}

TEST(ModelConfig, LegacyRopeScalingTypeKey) {
  const ModelConfig c = parse_model_config(
      json::parse(qwen3_with(R"({"rope_scaling": {"type": "linear", "factor": 4.0}})")),
      "inline.json");
  EXPECT_EQ(c.rope.type, ops::RopeType::linear);
  EXPECT_EQ(c.rope.factor, 4.0);
}

TEST(ModelConfig, RefusesWhatWeCannotCompute) {
  expect_refused(qwen3_with(R"({"model_type": "gpt2"})"),
                 {"model_type 'gpt2' is not supported", "llama, mistral, qwen2, qwen3"});
  expect_refused(qwen3_with(R"({"hidden_act": "gelu"})"), {"hidden_act", "gelu"});
  expect_refused(qwen3_with(R"({"mlp_bias": true})"), {"mlp_bias"});
  expect_refused(qwen3_with(R"({"use_sliding_window": true})"),
                 {"use_sliding_window", "set use_sliding_window to false"});
  expect_refused(qwen3_with(R"({"model_type": "qwen2", "use_sliding_window": true})"),
                 {"use_sliding_window"});
  expect_refused(qwen3_with(R"({"num_key_value_heads": 3})"),
                 {"num_attention_heads", "num_key_value_heads"});
  expect_refused(qwen3_with(R"({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})"),
                 {"rope_scaling", "yarn"});
  expect_refused(qwen3_with(R"({"rope_scaling": {"type": "dynamic", "factor": 4.0}})"),
                 {"rope_scaling", "dynamic"});
  expect_refused(qwen3_with(R"({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1.0}})"),
                 {"rope_parameters", "yarn"});
  expect_refused(qwen3_with(R"({"rope_scaling": {"rope_type": "linear"}})"), {"factor"});
  expect_refused(qwen3_with(R"({"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0}})"),
                 {"original_max_position_embeddings"});
  expect_refused(qwen3_with(R"({"rope_theta": 5.0, "rope_parameters": {"rope_type": "default",
      "rope_theta": 6.0}})"),
                 {"rope_theta"});
  expect_refused(qwen3_with(R"({"partial_rotary_factor": 0.5})"), {"partial_rotary_factor"});
}

TEST(ModelConfig, RefusesMissingOrBadSizes) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "vocab_size"}) {
    json missing = json::parse(qwen3_with("{}"));
    missing.erase(key);
    expect_refused(missing.dump(), {key});
    expect_refused(qwen3_with(std::string(R"({")") + key + R"(": 0})"), {key, "positive"});
    expect_refused(qwen3_with(std::string(R"({")") + key + R"(": -4})"), {key});
    expect_refused(qwen3_with(std::string(R"({")") + key + R"(": "64"})"), {key, "integer"});
    expect_refused(qwen3_with(std::string(R"({")") + key + R"(": 64.5})"), {key, "integer"});
  }
  expect_refused(qwen3_with(R"({"head_dim": 0})"), {"head_dim"});
  expect_refused(qwen3_with(R"({"head_dim": 15})"), {"head_dim"});
  expect_refused(qwen3_with(R"({"num_key_value_heads": -2})"), {"num_key_value_heads"});
  expect_refused(qwen3_with(R"({"hidden_size": 66})"), {"hidden_size", "head_dim"});
  expect_refused(qwen3_with(R"({"max_position_embeddings": "long"})"), {"max_position_embeddings"});
  expect_refused(qwen3_with(R"({"rms_norm_eps": "small"})"), {"rms_norm_eps"});
  expect_refused(qwen3_with(R"({"rms_norm_eps": 2147483648})"), {"rms_norm_eps", "(0, 1)"});
  expect_refused(qwen3_with(R"({"rms_norm_eps": 0})"), {"rms_norm_eps", "(0, 1)"});
  // A misspelled rope key is reported instead of silently falling back to a default.
  expect_refused(qwen3_with(R"({"rope_parameters": {"rope_type": "linear", "factr": 2.0,
                                                     "factor": 2.0, "rope_theta": 1e6}})"),
                 {"rope_parameters", "unknown key 'factr'", "linear"});
  expect_refused(qwen3_with(R"({"rope_scaling": {"rope_type": "default", "factor": 2.0}})"),
                 {"rope_scaling", "unknown key 'factor'"});
  expect_refused(qwen3_with(R"({"rope_theta": "big"})"), {"rope_theta"});
  expect_refused(qwen3_with(R"({"tie_word_embeddings": 1})"), {"tie_word_embeddings"});
  expect_refused(qwen3_with(R"({"attention_bias": "no"})"), {"attention_bias"});
  expect_refused(qwen3_with(R"({"model_type": 3})"), {"model_type"});
  expect_refused(qwen3_with(R"({"rope_scaling": [1, 2]})"), {"rope_scaling"});
  expect_refused(R"({"hidden_size": 64})", {"model_type"});
  expect_refused("[1, 2]", {"object"});
}

TEST(ModelConfig, FileErrorsNameTheFile) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ulysses_config_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto bad = dir / "broken.json";
  std::ofstream(bad) << "{\"model_type\": \"llama\",";
  for (const auto& path : {bad, dir / "absent.json"}) {
    try {
      load_model_config(path);
      ADD_FAILURE() << "no error for " << path;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
  try {
    resolve_model_config(dir.string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("not a preset"), std::string::npos) << message;
    EXPECT_NE(message.find("no config.json found in " + dir.string()), std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST(ModelConfig, ResolvesDirectoryAndPreset) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ulysses_resolve_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kConfigs / "qwen2.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  expect_same(resolve_model_config(dir.string()), load_model_config(kConfigs / "qwen2.json"),
              "directory");
  expect_same(resolve_model_config("tiny"), preset_config("tiny"), "preset");
  std::filesystem::remove_all(dir);
}

TEST(ModelConfig, RoundTripsEveryFileAndPreset) {
  for (const char* file : kConfigFiles) {
    const ModelConfig c = load_model_config(kConfigs / file);
    const json written = model_config_to_json(c);
    // Transformers 4.x reads the top-level spelling.
    EXPECT_TRUE(written.contains("rope_theta"));
    EXPECT_TRUE(written.contains("rope_scaling"));
    EXPECT_EQ(written["use_cache"], false);
    // Reparse from text, as a file would be.
    expect_same(parse_model_config(json::parse(written.dump(2)), "written.json"), c, file);
  }
  for (const auto& name : preset_names()) {
    const ModelConfig c = preset_config(name);
    expect_same(parse_model_config(model_config_to_json(c), "written.json"), c, name);
  }
}

TEST(ModelConfig, WritesArchitectureAndSlidingWindowFields) {
  const json llama = model_config_to_json(load_model_config(kConfigs / "llama31.json"));
  EXPECT_EQ(llama["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(llama["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(llama["rope_scaling"]["factor"], 32.0);
  EXPECT_EQ(llama["hidden_act"], "silu");
  const json qwen2 = model_config_to_json(load_model_config(kConfigs / "qwen2.json"));
  EXPECT_EQ(qwen2["architectures"][0], "Qwen2ForCausalLM");
  EXPECT_EQ(qwen2["use_sliding_window"], false);
  const json qwen3 = model_config_to_json(preset_config("qwen3-0.6b"));
  EXPECT_EQ(qwen3["architectures"][0], "Qwen3ForCausalLM");
  EXPECT_TRUE(qwen3["rope_scaling"].is_null());
  EXPECT_EQ(qwen3["tie_word_embeddings"], true);
  const json mistral = model_config_to_json(load_model_config(kConfigs / "mistral.json"));
  EXPECT_EQ(mistral["architectures"][0], "MistralForCausalLM");
  EXPECT_EQ(mistral["sliding_window"], 4096);
  ModelConfig no_window = load_model_config(kConfigs / "mistral.json");
  no_window.sliding_window = 0;
  EXPECT_TRUE(model_config_to_json(no_window)["sliding_window"].is_null());
}

TEST(ModelConfig, Presets) {
  EXPECT_EQ(preset_names().size(), 6u);
  for (const auto& name : preset_names()) EXPECT_TRUE(is_preset(name));
  EXPECT_FALSE(is_preset("qwen3-0.5b"));
  try {
    preset_config("qwen3-0.5b");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qwen3-1.7b"), std::string::npos) << e.what();
  }
  const ModelConfig tiny = preset_config("tiny");
  EXPECT_EQ(tiny.model_type, ModelType::qwen3);
  EXPECT_EQ(tiny.hidden_size, 64);
  EXPECT_EQ(tiny.intermediate_size, 176);
  EXPECT_EQ(tiny.num_hidden_layers, 2);
  EXPECT_EQ(tiny.num_attention_heads, 4);
  EXPECT_EQ(tiny.num_key_value_heads, 2);
  EXPECT_EQ(tiny.head_dim, 16);
  EXPECT_EQ(tiny.vocab_size, 128);
  EXPECT_EQ(tiny.max_position_embeddings, 4096);
  EXPECT_EQ(tiny.rope.theta, 10000.0);
  EXPECT_FALSE(tiny.tie_word_embeddings);
  EXPECT_TRUE(tiny.qk_norm);
  const ModelConfig q4 = preset_config("qwen3-4b");
  EXPECT_EQ(q4.hidden_size, 2560);
  EXPECT_EQ(q4.intermediate_size, 9728);
  EXPECT_EQ(q4.num_hidden_layers, 36);
  EXPECT_EQ(q4.num_attention_heads, 32);
  EXPECT_TRUE(q4.tie_word_embeddings);
  EXPECT_FALSE(preset_config("qwen3-8b").tie_word_embeddings);
  EXPECT_EQ(preset_config("qwen3-1.7b").hidden_size, 2048);
}

TEST(ModelConfig, ModelTypeNamesRoundTrip) {
  for (const ModelType type :
       {ModelType::llama, ModelType::mistral, ModelType::qwen2, ModelType::qwen3})
    EXPECT_EQ(parse_model_type(model_type_name(type), "x"), type);
  EXPECT_STREQ(model_type_name(ModelType::qwen2), "qwen2");
  try {
    parse_model_type("Qwen3", "config.json");
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: model_type 'Qwen3' is not supported "
                                         "(supported: llama, mistral, qwen2, qwen3)"),
              std::string::npos)
        << e.what();
  }
}

TEST(ModelConfig, ParameterCounts) {
  // qwen3-0.6b by hand: V=151936 C=1024 L=28 Hq=16 Hkv=8 D=128 I=3072, tied embeddings.
  const std::int64_t q06_layer = 1024 * 2048        // q_proj
                                 + 2 * 1024 * 1024  // k_proj, v_proj
                                 + 2048 * 1024      // o_proj
                                 + 2 * 128          // q_norm, k_norm
                                 + 3 * 1024 * 3072  // gate, up, down
                                 + 2 * 1024;        // two RMSNorms
  const std::int64_t q06 = 151936LL * 1024 + 28 * q06_layer + 1024;
  EXPECT_EQ(q06, 596049920);
  EXPECT_EQ(parameter_count(preset_config("qwen3-0.6b")), 596049920);
  EXPECT_EQ(matmul_parameter_count(preset_config("qwen3-0.6b")),
            28 * (1024 * 2048 + 2 * 1024 * 1024 + 2048 * 1024 + 3 * 1024 * 3072) + 151936LL * 1024);
  EXPECT_EQ(parameter_count(preset_config("llama-3-8b")), 8030261248);
  // Transformers 5.24 (Qwen3ForCausalLM built from model_config_to_json(tiny)) counts 108928.
  EXPECT_EQ(parameter_count(preset_config("tiny")), 108928);
  // Untied: embeddings and lm_head both count.
  ModelConfig untied = preset_config("qwen3-0.6b");
  untied.tie_word_embeddings = false;
  EXPECT_EQ(parameter_count(untied), 596049920 + 151936LL * 1024);
  EXPECT_EQ(matmul_parameter_count(untied), matmul_parameter_count(preset_config("qwen3-0.6b")));
  // qwen2 biases: q, k, v only. Tiny shape: C=8, heads 2/1, D=4, I=16, V=10, L=1, untied.
  ModelConfig small = parse_model_config(
      json::parse(R"({"model_type": "qwen2", "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "vocab_size": 10})"),
      "inline.json");
  const std::int64_t small_layer = 8 * 8 + 2 * 8 * 4 + 8 * 8 + (8 + 2 * 4) + 3 * 8 * 16 + 2 * 8;
  EXPECT_EQ(parameter_count(small), 10 * 8 + small_layer + 8 + 10 * 8);
}

}  // namespace
}  // namespace ulysses::model
