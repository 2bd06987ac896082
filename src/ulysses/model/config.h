// ModelConfig: the architecture of a Llama/Qwen-family decoder, read from a Hugging Face
// config.json (or a built-in preset) and written back in a form current Transformers loads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ulysses/ops/rope.h"

namespace ulysses::model {

// The model families we load, parsed from config.json's model_type once (parse_model_config):
// nothing compares names after that.
enum class ModelType { llama, mistral, qwen2, qwen3 };
// The Hugging Face model_type ("llama", "mistral", "qwen2", "qwen3").
const char* model_type_name(ModelType type);
// The type of a model_type name; Error "<where>: model_type '<name>' is not supported
// (supported: llama, mistral, qwen2, qwen3)" otherwise.
ModelType parse_model_type(const std::string& name, const std::string& where);

struct ModelConfig {
  ModelType model_type = ModelType::qwen3;
  std::int64_t hidden_size = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t num_hidden_layers = 0;
  std::int64_t num_attention_heads = 0;
  std::int64_t num_key_value_heads = 0;
  std::int64_t head_dim = 0;  // hidden_size / num_attention_heads when config.json omits it
  std::int64_t vocab_size = 0;
  std::int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  ops::RopeConfig rope;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // bias on q/k/v projections (qwen2 always; llama/qwen3 attention_bias)
  bool o_bias = false;    // bias on o_proj (llama/qwen3 attention_bias)
  bool qk_norm = false;   // per-head RMSNorm of q and k before RoPE (qwen3)
  std::int64_t sliding_window = 0;  // mistral: window size when set (0 = none); see validate_for
  std::string torch_dtype = "bfloat16";
  std::int64_t bos_token_id = -1;  // -1 = absent
  std::int64_t eos_token_id = -1;

  std::int64_t q_dim() const { return num_attention_heads * head_dim; }
  std::int64_t kv_dim() const { return num_key_value_heads * head_dim; }
};

// Parses a config.json object. `origin` names the file in messages. Unknown keys that do not
// change the math are ignored; settings we cannot compute exactly throw Error naming the key
// (sliding windows switched on in qwen2/qwen3, mlp_bias, hidden_act other than silu, rope types
// other than default/linear/llama3, an unknown model_type, missing or non-positive sizes,
// num_attention_heads not divisible by num_key_value_heads, ...).
// Reads the top-level rope_theta / rope_scaling of published checkpoints and the
// rope_parameters object Transformers 5 writes.
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& origin);

// Reads and parses a config.json file (Error names the file when missing or invalid JSON).
ModelConfig load_model_config(const std::filesystem::path& path);

// A config.json that Transformers loads into the same architecture (architectures, model_type,
// sizes, rope in both spellings, tie_word_embeddings, torch_dtype, ...).
nlohmann::json model_config_to_json(const ModelConfig& config);

// Built-in presets (random init, no downloads): "tiny", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b",
// "qwen3-8b", "llama-3-8b".
std::vector<std::string> preset_names();
bool is_preset(const std::string& name);
ModelConfig preset_config(const std::string& name);  // Error lists the presets

// Resolves --model: a preset name or a directory containing config.json.
ModelConfig resolve_model_config(const std::string& model);

// Number of parameters (embeddings, every projection, norms, biases, untied lm_head).
std::int64_t parameter_count(const ModelConfig& config);
// Parameters that take part in matrix multiplications per token (for the FLOP formula):
// every projection matrix plus the LM head; not embeddings lookups, norms or biases.
std::int64_t matmul_parameter_count(const ModelConfig& config);

}  // namespace ulysses::model
