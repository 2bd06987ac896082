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

HfWeightReader::HfWeightReader(const fs::path& dir, const model::ModelConfig& config)
    : dir_(dir), config_(config), layout_(config), reader_(dir) {
  std::set<std::string> expected;
  for (const auto& group : layout_.groups()) {
    for (const auto& spec : group.params) {
      expected.insert(spec.name);
      if (!reader_.contains(spec.name))
        UL_FAIL(dir.string(), ": tensor '", spec.name, "' is missing from the checkpoint (",
                model::model_type_name(config.model_type), " with this config.json needs it)");
      const SafetensorsEntry& entry = reader_.entry(spec.name);
      if (entry.shape != spec.shape)
        UL_FAIL(dir.string(), ": tensor '", spec.name, "' has shape ", shape_str(entry.shape),
                " but config.json implies ", shape_str(spec.shape));
    }
  }
  for (const auto& name : reader_.names()) {
    if (expected.count(name)) continue;
    // Tied models may still carry a copy of the embedding as lm_head.weight (compared with the
    // embedding where it is read: read_group_range).
    if (name == "lm_head.weight" && config.tie_word_embeddings) {
      if (reader_.entry(name).shape != reader_.entry("model.embed_tokens.weight").shape)
        UL_FAIL(dir.string(), ": ", tied_head_message());
      continue;
    }
    UL_FAIL(dir.string(), ": unexpected tensor '", name,
            "' (not part of this architecture; does config.json match the weights?)");
  }
}

std::string HfWeightReader::tied_head_message() {
  return "config.json says tie_word_embeddings: true but the checkpoint's 'lm_head.weight' "
         "differs from 'model.embed_tokens.weight'; set tie_word_embeddings to false in "
         "config.json (an untied model) or remove lm_head.weight";
}

void HfWeightReader::read_group_range(std::size_t group, std::int64_t lo, Tensor out) const {
  UL_CHECK(group < layout_.groups().size(), "read_group_range: group ", group, " out of range");
  UL_CHECK(out.ndim() == 1 && (out.dtype() == DType::f32 || out.dtype() == DType::bf16),
           "read_group_range: out must be a 1-D f32 or bf16 tensor, got ", shape_str(out.shape()),
           " ", dtype_name(out.dtype()));
  UL_CHECK(lo >= 0, "read_group_range: lo is ", lo, ", expected >= 0");
  const model::ParamGroup& g = layout_.groups()[group];
  const std::int64_t hi = lo + out.numel();
  // Host f32 staging of the range (the caller's buffer directly when it is host f32).
  const bool direct = out.device().is_cpu() && out.dtype() == DType::f32;
  Tensor host = direct ? out : Tensor::empty({out.numel()}, DType::f32);
  host.zero_();  // gaps and padding
  for (const auto& spec : g.params) {
    const std::int64_t begin = std::max(lo, spec.offset);
    const std::int64_t end = std::min(hi, spec.offset + shape_numel(spec.shape));
    if (end <= begin) continue;
    const Tensor part = reader_.read_elements(spec.name, begin - spec.offset, end - spec.offset);
    check_finite(part, dir_.string(), spec.name,
                 "the input weights are corrupt (NaN or infinity); nothing was trained");
    if (spec.name == "model.embed_tokens.weight" && config_.tie_word_embeddings &&
        reader_.contains("lm_head.weight")) {
      const Tensor head =
          reader_.read_elements("lm_head.weight", begin - spec.offset, end - spec.offset);
      if (std::memcmp(head.raw(), part.raw(), part.nbytes()) != 0)
        UL_FAIL(dir_.string(), ": ", tied_head_message());
    }
    host.rows(begin - lo, end - lo).copy_from(part);
  }
  if (direct) return;
  if (out.dtype() == DType::f32) return out.copy_from(host);
  Tensor rounded = out.device().is_cpu() ? out : Tensor::empty({out.numel()}, DType::bf16);
  const float* in = host.data<float>();
  bf16* o = rounded.data<bf16>();
  const std::int64_t n = out.numel();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) o[i] = float_to_bf16(in[i]);
  if (!out.device().is_cpu()) out.copy_from(rounded);
}

void load_hf_weights(const fs::path& dir, model::ParamBuffers& params) {
  const HfWeightReader reader(dir, params.config());
  for (std::size_t g = 0; g < params.flat().size(); ++g)
    reader.read_group_range(g, 0, params.flat()[g]);
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
