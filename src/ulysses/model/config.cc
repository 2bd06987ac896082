#include "ulysses/model/config.h"

#include <algorithm>
#include <fstream>

#include "ulysses/core/error.h"
#include "ulysses/core/parse_limits.h"

namespace ulysses::model {
namespace {

using nlohmann::json;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// True when `json` has `key` with a non-null value.
bool has(const json& object, const char* key) {
  return object.contains(key) && !object.at(key).is_null();
}

// A JSON integer (not a float, not a bool) read from object[key]; `where` prefixes messages.
std::int64_t as_int(const json& value, const std::string& where, const char* key) {
  if (!value.is_number_integer())
    UL_FAIL(where, ": ", key, " must be an integer, got ", truncate_for_message(value.dump()));
  if (value.is_number_unsigned() && value.get<std::uint64_t>() > INT64_MAX)
    UL_FAIL(where, ": ", key, " is too large (", truncate_for_message(value.dump()), ")");
  return value.get<std::int64_t>();
}

double as_number(const json& value, const std::string& where, const char* key) {
  if (!value.is_number())
    UL_FAIL(where, ": ", key, " must be a number, got ", truncate_for_message(value.dump()));
  return value.get<double>();
}

bool as_bool(const json& value, const std::string& where, const char* key) {
  if (!value.is_boolean())
    UL_FAIL(where, ": ", key, " must be true or false, got ", truncate_for_message(value.dump()));
  return value.get<bool>();
}

std::string as_string(const json& value, const std::string& where, const char* key) {
  if (!value.is_string())
    UL_FAIL(where, ": ", key, " must be a string, got ", truncate_for_message(value.dump()));
  return value.get<std::string>();
}

std::int64_t required_positive(const json& object, const std::string& where, const char* key) {
  if (!has(object, key)) UL_FAIL(where, ": missing required key '", key, "'");
  const std::int64_t value = as_int(object.at(key), where, key);
  if (value <= 0) UL_FAIL(where, ": ", key, " must be positive, got ", value);
  return value;
}

std::int64_t optional_positive(const json& object, const std::string& where, const char* key,
                               std::int64_t fallback) {
  if (!has(object, key)) return fallback;
  const std::int64_t value = as_int(object.at(key), where, key);
  if (value <= 0) UL_FAIL(where, ": ", key, " must be positive, got ", value);
  return value;
}

// Parses one rope description: `params` holds "rope_type" (or legacy "type") and the fields of
// that type; `theta` comes from the caller. `where` names the object, e.g. "x.json: rope_scaling".
ops::RopeConfig parse_rope(const json& params, double theta, const std::string& where) {
  if (!params.is_object())
    UL_FAIL(where, " must be an object or null, got ", truncate_for_message(params.dump()));
  ops::RopeConfig rope;
  rope.theta = theta;
  std::string name = ops::rope_type_name(rope.type);
  if (has(params, "rope_type")) {
    name = as_string(params.at("rope_type"), where, "rope_type");
  } else if (has(params, "type")) {
    name = as_string(params.at("type"), where, "type");
  }
  rope.type = ops::parse_rope_type(name, where);  // the one place a rope type name is read
  auto field = [&](const char* key) {
    if (!has(params, key)) UL_FAIL(where, ": rope type '", name, "' needs key '", key, "'");
    return as_number(params.at(key), where, key);
  };
  // Every key must be one this rope type reads: a misspelled one ("factr") would otherwise fall
  // back to a default without a word.
  std::vector<std::string> reads;
  if (rope.type == ops::RopeType::linear) reads = {"factor"};
  if (rope.type == ops::RopeType::llama3)
    reads = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
  for (const auto& [key, value] : params.items()) {
    if (key == "rope_type" || key == "type" || key == "rope_theta") continue;
    if (std::find(reads.begin(), reads.end(), key) != reads.end()) continue;
    std::string list = "rope_type";
    for (const auto& read : reads) list += ", " + read;
    UL_FAIL(where, ": unknown key '", truncate_for_message(key), "' for rope type '", name,
            "' (it reads: ", list, "); fix or remove the key");
  }
  switch (rope.type) {
    case ops::RopeType::default_: return rope;
    case ops::RopeType::linear: rope.factor = field("factor"); break;
    case ops::RopeType::llama3:
      rope.factor = field("factor");
      rope.low_freq_factor = field("low_freq_factor");
      rope.high_freq_factor = field("high_freq_factor");
      if (!has(params, "original_max_position_embeddings"))
        UL_FAIL(where, ": rope type 'llama3' needs key 'original_max_position_embeddings'");
      rope.original_max_position_embeddings = as_int(params.at("original_max_position_embeddings"),
                                                     where, "original_max_position_embeddings");
      break;
  }
  if (!(rope.factor > 0)) UL_FAIL(where, ": factor must be positive, got ", rope.factor);
  return rope;
}

bool same_rope(const ops::RopeConfig& a, const ops::RopeConfig& b) {
  return a.theta == b.theta && a.type == b.type && a.factor == b.factor &&
         a.low_freq_factor == b.low_freq_factor && a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings;
}

// Reads rope settings in either spelling; when both are present they must agree.
ops::RopeConfig parse_rope_settings(const json& object, const std::string& origin) {
  const bool has_theta = has(object, "rope_theta");
  const double top_theta =
      has_theta ? as_number(object.at("rope_theta"), origin, "rope_theta") : 10000.0;
  const bool has_scaling = has(object, "rope_scaling");
  if (!has(object, "rope_parameters")) {
    if (!has_scaling) {
      ops::RopeConfig rope;
      rope.theta = top_theta;
      return rope;
    }
    return parse_rope(object.at("rope_scaling"), top_theta, origin + ": rope_scaling");
  }
  // Transformers 5: {"rope_type": ..., "rope_theta": ..., type-specific fields}.
  const json& params = object.at("rope_parameters");
  const std::string where = origin + ": rope_parameters";
  if (!params.is_object())
    UL_FAIL(where, " must be an object, got ", truncate_for_message(params.dump()));
  for (const auto& [key, value] : params.items()) {
    if (value.is_object())
      UL_FAIL(where, ": per-layer-type rope parameters ('", key, "') are not supported");
  }
  const double theta = has(params, "rope_theta")
                           ? as_number(params.at("rope_theta"), where, "rope_theta")
                           : top_theta;
  const ops::RopeConfig rope = parse_rope(params, theta, where);
  if (has_theta && top_theta != theta)
    UL_FAIL(origin, ": rope_theta (", top_theta, ") disagrees with rope_parameters.rope_theta (",
            theta, "); remove one of them");
  if (has_scaling &&
      !same_rope(parse_rope(object.at("rope_scaling"), theta, origin + ": rope_scaling"), rope))
    UL_FAIL(origin, ": rope_scaling disagrees with rope_parameters; remove one of them");
  return rope;
}

constexpr ModelType kModelTypes[] = {ModelType::llama, ModelType::mistral, ModelType::qwen2,
                                     ModelType::qwen3};

const char* architecture_of(ModelType model_type) {
  switch (model_type) {
    case ModelType::llama: return "LlamaForCausalLM";
    case ModelType::mistral: return "MistralForCausalLM";
    case ModelType::qwen2: return "Qwen2ForCausalLM";
    case ModelType::qwen3: return "Qwen3ForCausalLM";
  }
  UL_FAIL("architecture_of: unknown model type ", static_cast<int>(model_type));
}

ModelConfig qwen3_preset(std::int64_t hidden, std::int64_t intermediate, std::int64_t layers,
                         std::int64_t heads, bool tie) {
  ModelConfig c;
  c.model_type = ModelType::qwen3;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.vocab_size = 151936;
  c.max_position_embeddings = 40960;
  c.rms_norm_eps = 1e-6;
  c.rope.theta = 1e6;
  c.tie_word_embeddings = tie;
  c.qk_norm = true;
  c.bos_token_id = 151643;
  c.eos_token_id = 151645;
  return c;
}

}  // namespace

const char* model_type_name(ModelType type) {
  switch (type) {
    case ModelType::llama: return "llama";
    case ModelType::mistral: return "mistral";
    case ModelType::qwen2: return "qwen2";
    case ModelType::qwen3: return "qwen3";
  }
  UL_FAIL("model_type_name: unknown model type ", static_cast<int>(type));
}

ModelType parse_model_type(const std::string& name, const std::string& where) {
  std::string supported;
  for (const ModelType type : kModelTypes) {
    if (name == model_type_name(type)) return type;
    supported += (supported.empty() ? "" : ", ") + std::string(model_type_name(type));
  }
  UL_FAIL(where, where.empty() ? "" : ": ", "model_type '", truncate_for_message(name),
          "' is not supported (supported: ", supported, ")");
}

ModelConfig parse_model_config(const json& object, const std::string& origin) {
  if (!object.is_object()) UL_FAIL(origin, ": expected a JSON object, got ", object.type_name());
  ModelConfig c;
  if (!has(object, "model_type")) UL_FAIL(origin, ": missing required key 'model_type'");
  c.model_type = parse_model_type(as_string(object.at("model_type"), origin, "model_type"), origin);
  const bool is_qwen = c.model_type == ModelType::qwen2 || c.model_type == ModelType::qwen3;

  c.hidden_size = required_positive(object, origin, "hidden_size");
  c.intermediate_size = required_positive(object, origin, "intermediate_size");
  c.num_hidden_layers = required_positive(object, origin, "num_hidden_layers");
  c.num_attention_heads = required_positive(object, origin, "num_attention_heads");
  c.vocab_size = required_positive(object, origin, "vocab_size");
  c.num_key_value_heads =
      optional_positive(object, origin, "num_key_value_heads", c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    UL_FAIL(origin, ": num_attention_heads (", c.num_attention_heads,
            ") must be divisible by num_key_value_heads (", c.num_key_value_heads, ")");
  if (!has(object, "head_dim") && c.hidden_size % c.num_attention_heads != 0)
    UL_FAIL(origin, ": hidden_size (", c.hidden_size, ") is not divisible by num_attention_heads (",
            c.num_attention_heads, "); set head_dim explicitly");
  c.head_dim = optional_positive(object, origin, "head_dim", c.hidden_size / c.num_attention_heads);
  if (c.head_dim % 2 != 0)
    UL_FAIL(origin, ": head_dim (", c.head_dim, ") must be even for rotary embeddings");
  c.max_position_embeddings = optional_positive(object, origin, "max_position_embeddings", 2048);
  if (has(object, "rms_norm_eps")) {
    c.rms_norm_eps = as_number(object.at("rms_norm_eps"), origin, "rms_norm_eps");
    if (!(c.rms_norm_eps > 0 && c.rms_norm_eps < 1))
      UL_FAIL(origin, ": rms_norm_eps must be in (0, 1) (typically 1e-6 or 1e-5), got ",
              c.rms_norm_eps);
  }

  if (has(object, "hidden_act")) {
    const std::string act = as_string(object.at("hidden_act"), origin, "hidden_act");
    if (act != "silu")
      UL_FAIL(origin, ": hidden_act '", act, "' is not supported (only silu / SwiGLU)");
  }
  if (has(object, "mlp_bias") && as_bool(object.at("mlp_bias"), origin, "mlp_bias"))
    UL_FAIL(origin, ": mlp_bias true is not supported; set mlp_bias to false");
  if (has(object, "partial_rotary_factor") &&
      as_number(object.at("partial_rotary_factor"), origin, "partial_rotary_factor") != 1.0)
    UL_FAIL(origin, ": partial_rotary_factor other than 1 is not supported");
  if (is_qwen && has(object, "use_sliding_window") &&
      as_bool(object.at("use_sliding_window"), origin, "use_sliding_window"))
    UL_FAIL(origin,
            ": use_sliding_window: sliding-window attention is not supported; set "
            "use_sliding_window to false");
  if (c.model_type == ModelType::mistral && has(object, "sliding_window")) {
    c.sliding_window = as_int(object.at("sliding_window"), origin, "sliding_window");
    if (c.sliding_window < 0)
      UL_FAIL(origin, ": sliding_window must be positive or null, got ", c.sliding_window);
  }

  const bool attention_bias = has(object, "attention_bias") &&
                              as_bool(object.at("attention_bias"), origin, "attention_bias");
  if (c.model_type == ModelType::qwen2) {
    c.qkv_bias = true;  // Transformers' Qwen2Attention hardcodes these.
    c.o_bias = false;
  } else {
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
  }
  c.qk_norm = c.model_type == ModelType::qwen3;

  c.rope = parse_rope_settings(object, origin);

  if (has(object, "tie_word_embeddings"))
    c.tie_word_embeddings =
        as_bool(object.at("tie_word_embeddings"), origin, "tie_word_embeddings");
  if (has(object, "torch_dtype")) {
    c.torch_dtype = as_string(object.at("torch_dtype"), origin, "torch_dtype");
  } else if (has(object, "dtype")) {
    c.torch_dtype = as_string(object.at("dtype"), origin, "dtype");
  }
  if (has(object, "bos_token_id") && object.at("bos_token_id").is_number_integer())
    c.bos_token_id = object.at("bos_token_id").get<std::int64_t>();
  if (has(object, "eos_token_id") && object.at("eos_token_id").is_number_integer())
    c.eos_token_id = object.at("eos_token_id").get<std::int64_t>();
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) UL_FAIL(path.string(), ": cannot open model config (file missing or unreadable)");
  const std::string text = read_text_file_capped(path, kMaxConfigFileBytes, path.string());
  check_nesting_depth(text, path.string());
  json object;
  try {
    object = json::parse(text);
  } catch (const json::exception& e) {
    UL_FAIL(path.string(), ": not valid JSON (", truncate_for_message(e.what(), 300), ")");
  }
  return parse_model_config(object, path.string());
}

json model_config_to_json(const ModelConfig& c) {
  json out;
  out["architectures"] = json::array({architecture_of(c.model_type)});
  out["model_type"] = model_type_name(c.model_type);
  out["hidden_size"] = c.hidden_size;
  out["intermediate_size"] = c.intermediate_size;
  out["num_hidden_layers"] = c.num_hidden_layers;
  out["num_attention_heads"] = c.num_attention_heads;
  out["num_key_value_heads"] = c.num_key_value_heads;
  out["head_dim"] = c.head_dim;
  out["vocab_size"] = c.vocab_size;
  out["max_position_embeddings"] = c.max_position_embeddings;
  out["hidden_act"] = "silu";
  out["rms_norm_eps"] = c.rms_norm_eps;

  json rope_fields = json::object();
  rope_fields["rope_type"] = ops::rope_type_name(c.rope.type);
  if (c.rope.type != ops::RopeType::default_) rope_fields["factor"] = c.rope.factor;
  if (c.rope.type == ops::RopeType::llama3) {
    rope_fields["low_freq_factor"] = c.rope.low_freq_factor;
    rope_fields["high_freq_factor"] = c.rope.high_freq_factor;
    rope_fields["original_max_position_embeddings"] = c.rope.original_max_position_embeddings;
  }
  // Transformers 4.x reads rope_theta / rope_scaling; Transformers 5 reads rope_parameters.
  out["rope_theta"] = c.rope.theta;
  out["rope_scaling"] = c.rope.type == ops::RopeType::default_ ? json(nullptr) : rope_fields;
  json rope_parameters = rope_fields;
  rope_parameters["rope_theta"] = c.rope.theta;
  out["rope_parameters"] = rope_parameters;

  if (c.model_type == ModelType::qwen2) {
    if (!c.qkv_bias || c.o_bias)
      UL_FAIL("model_config_to_json: qwen2 always has q/k/v biases and no o_proj bias");
  } else if (c.qkv_bias != c.o_bias) {
    UL_FAIL("model_config_to_json: ", model_type_name(c.model_type),
            " cannot express different q/k/v and o_proj biases (attention_bias covers both)");
  }
  if (c.qk_norm != (c.model_type == ModelType::qwen3))
    UL_FAIL("model_config_to_json: qk_norm is set by model_type (qwen3 only)");
  if (c.model_type != ModelType::qwen2) out["attention_bias"] = c.qkv_bias;
  out["mlp_bias"] = false;
  out["tie_word_embeddings"] = c.tie_word_embeddings;
  out["torch_dtype"] = c.torch_dtype;
  out["use_cache"] = false;
  if (c.bos_token_id >= 0) out["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id >= 0) out["eos_token_id"] = c.eos_token_id;
  if (c.model_type == ModelType::mistral) {
    out["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
  } else {
    if (c.sliding_window != 0)
      UL_FAIL("model_config_to_json: ", model_type_name(c.model_type),
              " does not support sliding_window");
    if (c.model_type != ModelType::llama) {
      out["use_sliding_window"] = false;
      out["sliding_window"] = nullptr;
    }
  }
  return out;
}

std::vector<std::string> preset_names() {
  return {"tiny", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "llama-3-8b"};
}

bool is_preset(const std::string& name) {
  for (const auto& preset : preset_names())
    if (preset == name) return true;
  return false;
}

ModelConfig preset_config(const std::string& name) {
  if (name == "qwen3-0.6b") return qwen3_preset(1024, 3072, 28, 16, true);
  if (name == "qwen3-1.7b") return qwen3_preset(2048, 6144, 28, 16, true);
  if (name == "qwen3-4b") return qwen3_preset(2560, 9728, 36, 32, true);
  if (name == "qwen3-8b") return qwen3_preset(4096, 12288, 36, 32, false);
  if (name == "tiny") {
    ModelConfig c = qwen3_preset(64, 176, 2, 4, false);
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.vocab_size = 128;
    c.max_position_embeddings = 4096;
    c.rope.theta = 10000.0;
    c.bos_token_id = -1;
    c.eos_token_id = -1;
    return c;
  }
  if (name == "llama-3-8b") {
    ModelConfig c;
    c.model_type = ModelType::llama;
    c.hidden_size = 4096;
    c.intermediate_size = 14336;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    c.vocab_size = 128256;
    c.max_position_embeddings = 8192;
    c.rms_norm_eps = 1e-5;
    c.rope.theta = 500000.0;
    c.bos_token_id = 128000;
    c.eos_token_id = 128001;
    return c;
  }
  UL_FAIL("unknown model preset '", name, "' (presets: ", join(preset_names()), ")");
}

ModelConfig resolve_model_config(const std::string& model) {
  if (is_preset(model)) return preset_config(model);
  const std::filesystem::path path(model);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec) &&
      std::filesystem::is_regular_file(path / "config.json", ec))
    return load_model_config(path / "config.json");
  if (std::filesystem::is_regular_file(path, ec) && path.extension() == ".json")
    return load_model_config(path);
  UL_FAIL("--model ", model, ": not a preset (", join(preset_names()),
          ") and no config.json found in ", model);
}

std::int64_t parameter_count(const ModelConfig& c) {
  const std::int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  std::int64_t layer = C * c.q_dim() + 2 * C * c.kv_dim() + c.q_dim() * C;  // q, k, v, o
  if (c.qkv_bias) layer += c.q_dim() + 2 * c.kv_dim();
  if (c.o_bias) layer += C;
  if (c.qk_norm) layer += 2 * c.head_dim;
  layer += 3 * C * I;  // gate, up, down
  layer += 2 * C;      // input and post-attention norms
  std::int64_t total = V * C + c.num_hidden_layers * layer + C;
  if (!c.tie_word_embeddings) total += V * C;
  return total;
}

std::int64_t matmul_parameter_count(const ModelConfig& c) {
  const std::int64_t C = c.hidden_size, I = c.intermediate_size;
  const std::int64_t layer = C * c.q_dim() + 2 * C * c.kv_dim() + c.q_dim() * C + 3 * C * I;
  return c.num_hidden_layers * layer + c.vocab_size * C;
}

}  // namespace ulysses::model
