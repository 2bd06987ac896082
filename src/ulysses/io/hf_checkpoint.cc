#include "ulysses/io/hf_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <set>

#include "ulysses/core/finite.h"
#include "ulysses/io/safetensors.h"
#include "ulysses/model/config.h"

namespace ulysses::io {

namespace fs = std::filesystem;

bool has_hf_weights(const fs::path& dir) {
  return fs::is_regular_file(dir / kSingleCheckpointName) ||
         fs::is_regular_file(dir / kCheckpointIndexName);
}

void load_hf_weights(const fs::path& dir, model::ParamBuffers& params) {
  const CheckpointReader reader(dir);
  const auto& layout = params.layout();
  std::set<std::string> expected;
  for (const auto& group : layout.groups()) {
    for (const auto& spec : group.params) {
      expected.insert(spec.name);
      if (!reader.contains(spec.name))
        UL_FAIL(dir.string(), ": tensor '", spec.name, "' is missing from the checkpoint (",
                model::model_type_name(params.config().model_type),
                " with this config.json needs it)");
      const SafetensorsEntry& entry = reader.entry(spec.name);
      if (entry.shape != spec.shape)
        UL_FAIL(dir.string(), ": tensor '", spec.name, "' has shape ", shape_str(entry.shape),
                " but config.json implies ", shape_str(spec.shape));
      const Tensor weights = reader.read(spec.name, DType::f32);
      check_finite(weights, dir.string(), spec.name,
                   "the input weights are corrupt (NaN or infinity); nothing was trained");
      params.get(spec.name).copy_from(weights);
    }
  }
  for (const auto& name : reader.names()) {
    if (expected.count(name)) continue;
    // Tied models may still carry a copy of the embedding as lm_head.weight: it must be that
    // copy, or the checkpoint is not the tied model config.json says it is.
    if (name == "lm_head.weight" && params.config().tie_word_embeddings) {
      const Tensor head = reader.read(name, DType::f32);
      const Tensor stored = params.get("model.embed_tokens.weight");
      const Tensor embedding = stored.device().is_cpu() ? stored : stored.to(Device::cpu());
      if (head.shape() != embedding.shape() ||
          std::memcmp(head.raw(), embedding.raw(), head.nbytes()) != 0)
        UL_FAIL(dir.string(),
                ": config.json says tie_word_embeddings: true but the checkpoint's "
                "'lm_head.weight' differs from 'model.embed_tokens.weight'; set "
                "tie_word_embeddings to false in config.json (an untied model) or remove "
                "lm_head.weight");
      continue;
    }
    UL_FAIL(dir.string(), ": unexpected tensor '", name,
            "' (not part of this architecture; does config.json match the weights?)");
  }
}

namespace {
void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    UL_CHECK(out.good(), "cannot write ", tmp.string());
  }
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(tmp, path);
}
}  // namespace

std::vector<std::string> hf_side_files() {
  return {"tokenizer.json",
          "tokenizer_config.json",
          "special_tokens_map.json",
          "chat_template.jinja",
          "chat_template.json",
          "generation_config.json",
          "vocab.json",
          "merges.txt",
          "tokenizer.model",
          "added_tokens.json"};
}

namespace {

// The saved config.json: the source's, with the saved dtype; or generated for presets.
nlohmann::json saved_config_json(const model::ModelConfig& config, const std::string& dtype_name,
                                 const fs::path* source) {
  nlohmann::json out;
  if (source != nullptr) {
    const fs::path path = *source / "config.json";
    std::ifstream in(path);
    if (!in) UL_FAIL(path.string(), ": cannot read it to pass it through to the saved model");
    try {
      out = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      UL_FAIL(path.string(), ": not valid JSON (", e.what(), ")");
    }
  } else {
    out = model::model_config_to_json(config);
    out["use_cache"] = true;  // Transformers' default for generation
  }
  out.erase("torch_dtype");
  out["dtype"] = dtype_name;
  return out;
}

void copy_file_atomically(const fs::path& from, const fs::path& to) {
  const fs::path tmp = to.string() + ".tmp";
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, to);
}

}  // namespace

void save_hf_checkpoint(const fs::path& dir, const model::ParamBuffers& params, DType dtype,
                        std::int64_t max_shard_bytes, const std::string& source_model) {
  UL_CHECK(dtype == DType::f32 || dtype == DType::bf16, "checkpoints are saved as f32 or bf16");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& group : params.layout().groups()) {
    for (const auto& spec : group.params) {
      const Tensor t = params.get(spec.name);
      const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
      // Before anything is written: a non-finite model is never saved.
      check_finite(host, dir.string(), spec.name,
                   "the model was not saved (the training diverged: lower --learning-rate or "
                   "set --max-grad-norm; resume from an earlier checkpoint)");
      tensors.emplace_back(spec.name, host.to(dtype));
    }
  }
  fs::create_directories(dir);
  write_sharded_safetensors(dir, tensors, static_cast<std::uint64_t>(max_shard_bytes));
  const std::string dtype_name = dtype == DType::bf16 ? "bfloat16" : "float32";
  const fs::path source(source_model);
  const bool from_dir = !source_model.empty() && !model::is_preset(source_model) &&
                        fs::is_regular_file(source / "config.json");
  write_text_atomically(
      dir / "config.json",
      saved_config_json(params.config(), dtype_name, from_dir ? &source : nullptr).dump(2) + "\n");
  if (from_dir)
    for (const std::string& name : hf_side_files())
      if (fs::is_regular_file(source / name)) copy_file_atomically(source / name, dir / name);
  if (!fs::exists(dir / "generation_config.json")) {
    nlohmann::json generation = {{"_from_model_config", true}};
    if (params.config().bos_token_id >= 0)
      generation["bos_token_id"] = params.config().bos_token_id;
    if (params.config().eos_token_id >= 0)
      generation["eos_token_id"] = params.config().eos_token_id;
    write_text_atomically(dir / "generation_config.json", generation.dump(2) + "\n");
  }
}

}  // namespace ulysses::io
