// Hugging Face model directories: config.json + model.safetensors (or shards with
// model.safetensors.index.json), tensor names as Transformers writes them.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ulysses/core/tensor.h"
#include "ulysses/io/safetensors.h"
#include "ulysses/model/params.h"

namespace ulysses::io {

// True when `dir` holds weights (model.safetensors or model.safetensors.index.json).
bool has_hf_weights(const std::filesystem::path& dir);

// Reads ranges of a model's flat parameter buffers straight from its safetensors (F32, BF16 or
// F16), so a ZeRO rank reads only what it keeps and no rank holds the whole model in f32.
// Thread-safety: as CheckpointReader (const reads may run concurrently).
class HfWeightReader {
 public:
  // Opens the directory's checkpoint and checks its header against the layout of `config`:
  // Errors name the file and tensor for a missing tensor, a shape that differs from
  // config.json's, an unexpected extra tensor (a tied model may carry lm_head.weight, of the
  // embedding's shape).
  HfWeightReader(const std::filesystem::path& dir, const model::ModelConfig& config);

  const model::ParamLayout& layout() const { return layout_; }
  // Elements [lo, lo + out.numel()) of group `group`'s flat buffer (the layout's order) into
  // `out` (1-D, f32 or bf16 rounded to nearest even, host or device); past the group's end:
  // zero. Reads only those elements. Errors name the file and tensor: non-finite values, or a
  // tied model's lm_head.weight differing from the embedding in this range.
  void read_group_range(std::size_t group, std::int64_t lo, Tensor out) const;

 private:
  static std::string tied_head_message();

  std::filesystem::path dir_;
  model::ModelConfig config_;
  model::ParamLayout layout_;
  CheckpointReader reader_;
};

// Loads every parameter of `params` (the whole model; HfWeightReader reads ranges) from the
// directory's safetensors, converted to f32, with HfWeightReader's checks.
void load_hf_weights(const std::filesystem::path& dir, model::ParamBuffers& params);

inline constexpr std::int64_t kDefaultMaxShardBytes = std::int64_t{5} << 30;

// Writes config.json, generation_config.json and the weights (dtype f32 or bf16) into `dir`,
// creating it. Files are written under temporary names and renamed, so a crash never leaves a
// half-written file. Checkpoints larger than max_shard_bytes are split into shards with an index.
//
// `source_model` is the --model the run started from. When it is a Hugging Face directory (not
// a preset name), the saved folder is a complete copy of it: its config.json passed through with
// only the keys the engine changes rewritten (`dtype` = the saved dtype, replacing the deprecated
// `torch_dtype`; every other key kept as it was, e.g. pad_token_id, a list eos_token_id,
// layer_types, use_cache), and its tokenizer files (hf_side_files()) copied. Otherwise
// config.json is generated from the model config and generation_config.json holds the
// bos/eos ids.
void save_hf_checkpoint(const std::filesystem::path& dir, const model::ParamBuffers& params,
                        DType dtype = DType::f32,
                        std::int64_t max_shard_bytes = kDefaultMaxShardBytes,
                        const std::string& source_model = "");

// The files copied from a source model directory when they exist: tokenizer files, the chat
// template and generation_config.json.
std::vector<std::string> hf_side_files();

}  // namespace ulysses::io
