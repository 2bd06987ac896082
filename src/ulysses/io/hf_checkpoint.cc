#include "ulysses/io/hf_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <set>

#include "ulysses/core/finite.h"
#include "ulysses/io/safetensors.h"

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
                params.config().model_type, " with this config.json needs it)");
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

void save_hf_checkpoint(const fs::path& dir, const model::ParamBuffers& params, DType dtype,
                        std::int64_t max_shard_bytes) {
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
  model::ModelConfig config = params.config();
  config.torch_dtype = dtype == DType::bf16 ? "bfloat16" : "float32";
  write_text_atomically(dir / "config.json", model::model_config_to_json(config).dump(2) + "\n");
}

}  // namespace ulysses::io
