// Reading and writing safetensors files and Hugging Face (sharded) checkpoints.
//
// File format: an 8-byte little-endian u64 N, then N bytes of JSON header, then the data buffer.
// The header maps each tensor name to {"dtype": "F32"|"BF16"|..., "shape": [...],
// "data_offsets": [begin, end]} (byte offsets relative to the data buffer) and may hold
// "__metadata__": {string: string}. The tensors must cover the data buffer exactly, without holes
// or overlaps.
//
// Every failure throws ulysses::Error whose message names the file (and the tensor when one is at
// fault). Readers validate the whole header when they open a file, so a reader that was
// constructed successfully only fails later on I/O errors or unsupported conversions.
// Thread-safety: a reader's const methods may be called from several threads at once (reads use
// pread on a file descriptor the reader owns).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ulysses/core/tensor.h"

namespace ulysses::io {

// One tensor as described by a safetensors header.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as spelled in the file: "F32", "BF16", "F16", "I64", ...
  Shape shape;
  std::uint64_t begin = 0;  // [begin, end): byte range within the data buffer
  std::uint64_t end = 0;
};

// Largest header we accept (the format itself caps it at 100 MB).
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// An open, validated safetensors file. Data is read on demand, tensor by tensor.
class SafetensorsReader {
 public:
  // Opens `path` and validates its header and layout (see the file comment).
  explicit SafetensorsReader(const std::filesystem::path& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Tensor names in data-buffer order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // The header entry of `name`; Error when absent.
  const SafetensorsEntry& entry(const std::string& name) const;
  // "__metadata__" (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads tensor `name` into a new CPU tensor.
  // Without `as`: F32 -> f32, BF16 -> bf16, F16 -> f32 (converted), I32 -> i32, I64 -> i64.
  // With `as`: floating-point tensors (F32, BF16, F16) convert to f32 or bf16; I32/I64 convert
  // to i32 or i64 (Error if a value does not fit). Other dtypes (F64, U8, BOOL, F8_*...) and
  // float<->integer conversions throw Error.
  Tensor read(const std::string& name, std::optional<DType> as = std::nullopt) const;
  // Elements [begin, end) of floating-point tensor `name` in row-major order, read alone from
  // the file (a ZeRO rank reads its shard, not the tensor) and converted to f32: a new CPU
  // tensor of shape [end - begin]. Error when the range is outside the tensor or the dtype is
  // not F32, BF16 or F16.
  Tensor read_elements(const std::string& name, std::int64_t begin, std::int64_t end) const;

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t data_start_ = 0;  // file offset of the data buffer
  std::vector<std::string> names_;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (f32, bf16, i32 or i64; any device, copied to the CPU as needed) to `path` in
// the given order. The header lists tensors in the same order, is padded with spaces to a
// multiple of 8 bytes and carries `metadata` plus "format": "pt" unless metadata sets "format"
// (Transformers refuses files whose metadata lacks it). Names must be unique, non-empty and not
// "__metadata__". The data goes to `path` + ".tmp", which is fsynced and renamed over `path`:
// readers never see a half-written file, and no .tmp remains after success (nor, as far as
// possible, after a failure).
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// File names of Hugging Face checkpoints.
inline constexpr const char* kSingleCheckpointName = "model.safetensors";
inline constexpr const char* kCheckpointIndexName = "model.safetensors.index.json";

// A checkpoint directory: either model.safetensors or model.safetensors.index.json with shards
// {"metadata": {"total_size": N}, "weight_map": {tensor name: shard file name}}. When both are
// present the single file wins (as in Transformers). Opening validates the index (shard names are
// plain file names inside the directory), opens every shard and checks that each tensor of the
// weight map exists in its shard.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::filesystem::path& directory);

  const std::filesystem::path& directory() const { return directory_; }
  bool sharded() const { return shards_.size() > 1 || index_; }
  // All tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return shard_of_.count(name) != 0; }
  // Header entry and reads as in SafetensorsReader; Error naming the directory when absent.
  const SafetensorsEntry& entry(const std::string& name) const;
  Tensor read(const std::string& name, std::optional<DType> as = std::nullopt) const;
  Tensor read_elements(const std::string& name, std::int64_t begin, std::int64_t end) const;

 private:
  const SafetensorsReader& reader_of(const std::string& name) const;

  std::filesystem::path directory_;
  bool index_ = false;
  std::vector<std::unique_ptr<SafetensorsReader>> shards_;
  std::map<std::string, std::size_t> shard_of_;  // tensor name -> index into shards_
};

// Writes a checkpoint into `directory` (created if needed): model.safetensors when all tensors
// fit in `max_shard_bytes` of tensor data, otherwise model-0000i-of-0000n.safetensors shards
// (tensors in the given order; a new shard starts when the next tensor would overflow the
// current one; a tensor larger than the limit gets a shard of its own) plus
// model.safetensors.index.json. Every file is written atomically as write_safetensors does. A
// stale file of the other layout (model.safetensors or the index) is removed so readers are never
// confused. Returns the names of the files written (index last).
std::vector<std::string> write_sharded_safetensors(
    const std::filesystem::path& directory,
    const std::vector<std::pair<std::string, Tensor>>& tensors, std::uint64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata = {});

}  // namespace ulysses::io
