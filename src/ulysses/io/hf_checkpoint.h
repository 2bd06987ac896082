// Hugging Face model directories: config.json + model.safetensors (or shards with
// model.safetensors.index.json), tensor names as Transformers writes them.
#pragma once

#include <filesystem>

#include "ulysses/core/tensor.h"
#include "ulysses/model/params.h"

namespace ulysses::io {

// True when `dir` holds weights (model.safetensors or model.safetensors.index.json).
bool has_hf_weights(const std::filesystem::path& dir);

// Loads every parameter of `params` from the directory's safetensors (F32, BF16 or F16,
// converted to f32). Errors name the file and tensor: a missing tensor, a shape that differs
// from config.json's, an unexpected extra tensor (except lm_head.weight for tied models).
void load_hf_weights(const std::filesystem::path& dir, model::ParamBuffers& params);

// Writes config.json and the weights (dtype f32 or bf16) into `dir`, creating it. Files are
// written under temporary names and renamed, so a crash never leaves a half-written file.
// Checkpoints larger than max_shard_bytes are split into shards with an index.
void save_hf_checkpoint(const std::filesystem::path& dir, const model::ParamBuffers& params,
                        DType dtype = DType::f32,
                        std::int64_t max_shard_bytes = std::int64_t{5} << 30);

}  // namespace ulysses::io
