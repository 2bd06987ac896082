#include "ulysses/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "ulysses/core/error.h"
#include "ulysses/core/parse_limits.h"

namespace ulysses::io {
namespace {

using nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts are not supported");

// Element size of every safetensors dtype we recognise (0 = unknown dtype).
std::uint64_t element_size(const std::string& dtype) {
  static const std::map<std::string, std::uint64_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
  }
  return "?";
}

std::string os_error() { return std::strerror(errno); }

// Reads exactly `bytes` bytes at `offset`.
void pread_all(int fd, void* out, std::uint64_t bytes, std::uint64_t offset,
               const std::filesystem::path& path) {
  auto* p = static_cast<char*>(out);
  while (bytes > 0) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, 1u << 30));
    const ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) UL_FAIL(path.string(), ": read failed: ", os_error());
    if (got == 0) UL_FAIL(path.string(), ": unexpected end of file (was it truncated?)");
    p += got;
    bytes -= static_cast<std::uint64_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
}

// A file written to `path.tmp`, then fsynced and renamed over `path` by commit(). Destroying an
// uncommitted AtomicFile removes the .tmp file.
class AtomicFile {
 public:
  explicit AtomicFile(const std::filesystem::path& path)
      : path_(path), tmp_(path.string() + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) UL_FAIL(tmp_.string(), ": cannot create file: ", os_error());
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void append(const void* data, std::uint64_t bytes) {
    const auto* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, 1u << 30));
      const ssize_t put = ::write(fd_, p, chunk);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) UL_FAIL(tmp_.string(), ": write failed: ", os_error());
      p += put;
      bytes -= static_cast<std::uint64_t>(put);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) UL_FAIL(tmp_.string(), ": fsync failed: ", os_error());
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) UL_FAIL(tmp_.string(), ": close failed: ", os_error());
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
      UL_FAIL(path_.string(), ": cannot rename ", tmp_.string(), " into place: ", os_error());
    committed_ = true;
    // Make the rename itself durable (best effort: some file systems refuse to open directories).
    const auto parent = path_.has_parent_path() ? path_.parent_path() : ".";
    const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Parses one header entry; `where` is "file: tensor 'name'".
SafetensorsEntry parse_entry(const std::string& name, const json& value, std::uint64_t data_size,
                             const std::string& where) {
  if (!value.is_object())
    UL_FAIL(where, ": header entry must be an object, got ", truncate_for_message(value.dump()));
  SafetensorsEntry entry;
  entry.name = name;
  if (!value.contains("dtype") || !value.at("dtype").is_string())
    UL_FAIL(where, ": missing or non-string \"dtype\"");
  entry.dtype = value.at("dtype").get<std::string>();
  const std::uint64_t size = element_size(entry.dtype);
  if (size == 0) UL_FAIL(where, ": unknown dtype '", entry.dtype, "'");

  if (!value.contains("shape") || !value.at("shape").is_array())
    UL_FAIL(where, ": missing or non-array \"shape\"");
  std::uint64_t bytes = size;  // numel * size, saturated at data_size + 1 against overflow
  for (const auto& dim : value.at("shape")) {
    if (!dim.is_number_integer()) UL_FAIL(where, ": shape entries must be integers");
    if (dim.is_number_unsigned() && dim.get<std::uint64_t>() > INT64_MAX)
      UL_FAIL(where, ": dimension ", truncate_for_message(dim.dump()), " is too large");
    const std::int64_t d = dim.get<std::int64_t>();
    if (d < 0)
      UL_FAIL(where, ": negative dimension ", d, " in shape ",
              truncate_for_message(value.at("shape").dump()));
    entry.shape.push_back(d);
    const auto ud = static_cast<std::uint64_t>(d);
    bytes = (ud != 0 && bytes > (data_size + 1) / ud) ? data_size + 1 : bytes * ud;
  }

  const json& offsets = value.contains("data_offsets") ? value.at("data_offsets") : json();
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    UL_FAIL(where, ": \"data_offsets\" must be [begin, end] with non-negative integers");
  entry.begin = offsets[0].get<std::uint64_t>();
  entry.end = offsets[1].get<std::uint64_t>();
  if (entry.begin > entry.end)
    UL_FAIL(where, ": data_offsets [", entry.begin, ", ", entry.end, "] are reversed");
  if (entry.end > data_size)
    UL_FAIL(where, ": data_offsets [", entry.begin, ", ", entry.end,
            "] lie outside the data buffer (", data_size, " bytes; file truncated?)");
  if (entry.end - entry.begin != bytes)
    UL_FAIL(where, ": data_offsets span ", entry.end - entry.begin, " bytes but ", entry.dtype,
            " shape ", shape_str(entry.shape), " needs ",
            bytes > data_size ? std::string("more") : std::to_string(bytes));
  return entry;
}

// Converts an integer tensor to i32 or i64, checking the range.
Tensor convert_integers(const Tensor& src, DType as, const std::string& where) {
  if (src.dtype() == as) return src;
  Tensor out = Tensor::empty(src.shape(), as);
  if (as == DType::i64) {
    const std::int32_t* in = src.data<std::int32_t>();
    std::int64_t* o = out.data<std::int64_t>();
    for (std::int64_t i = 0; i < src.numel(); ++i) o[i] = in[i];
  } else {
    const std::int64_t* in = src.data<std::int64_t>();
    std::int32_t* o = out.data<std::int32_t>();
    for (std::int64_t i = 0; i < src.numel(); ++i) {
      if (in[i] < INT32_MIN || in[i] > INT32_MAX)
        UL_FAIL(where, ": value ", in[i], " at index ", i, " does not fit in i32");
      o[i] = static_cast<std::int32_t>(in[i]);
    }
  }
  return out;
}

// Names must be unique, non-empty and not "__metadata__"; tensors must be defined.
void check_tensor_list(const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::string& where) {
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty() || name == "__metadata__")
      UL_FAIL(where, ": invalid tensor name '", name, "'");
    if (!seen.insert(name).second) UL_FAIL(where, ": duplicate tensor name '", name, "'");
    if (!tensor.defined()) UL_FAIL(where, ": tensor '", name, "' is undefined");
  }
}

}  // namespace

SafetensorsReader::SafetensorsReader(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) UL_FAIL(file, ": cannot open safetensors file: ", os_error());
  try {
    struct stat info;
    if (::fstat(fd_, &info) != 0) UL_FAIL(file, ": cannot stat: ", os_error());
    if (!S_ISREG(info.st_mode)) UL_FAIL(file, ": not a regular file");
    const auto file_size = static_cast<std::uint64_t>(info.st_size);
    if (file_size < 8)
      UL_FAIL(file, ": file is too short (", file_size, " bytes) to be a safetensors file");
    unsigned char length_bytes[8];
    pread_all(fd_, length_bytes, 8, 0, path);
    std::uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
    if (header_size > kMaxSafetensorsHeaderBytes)
      UL_FAIL(file, ": header length ", header_size, " is absurd (limit ",
              kMaxSafetensorsHeaderBytes, " bytes): not a safetensors file, or corrupt");
    if (header_size > file_size - 8)
      UL_FAIL(file, ": header length ", header_size, " exceeds the file size (", file_size,
              " bytes): file truncated or corrupt");
    std::string header(header_size, '\0');
    pread_all(fd_, header.data(), header_size, 8, path);
    data_start_ = 8 + header_size;
    const std::uint64_t data_size = file_size - data_start_;

    check_nesting_depth(header, file + " (header)");
    json root;
    try {
      root = json::parse(header);
    } catch (const json::exception& e) {
      UL_FAIL(file, ": header is not valid JSON (", truncate_for_message(e.what(), 300), ")");
    }
    if (!root.is_object()) UL_FAIL(file, ": header must be a JSON object");

    std::vector<const SafetensorsEntry*> by_offset;
    for (const auto& [name, value] : root.items()) {
      if (name == "__metadata__") {
        if (!value.is_object()) UL_FAIL(file, ": __metadata__ must be an object");
        for (const auto& [key, text] : value.items()) {
          if (!text.is_string())
            UL_FAIL(file, ": __metadata__ value of '", key, "' must be a string");
          metadata_[key] = text.get<std::string>();
        }
        continue;
      }
      const std::string where = file + ": tensor '" + name + "'";
      auto [it, inserted] = entries_.emplace(name, parse_entry(name, value, data_size, where));
      by_offset.push_back(&it->second);
    }
    // The tensors must tile the data buffer: sorted by offset, each starts where the last ended.
    std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    std::uint64_t cursor = 0;
    const SafetensorsEntry* previous = nullptr;
    for (const SafetensorsEntry* entry : by_offset) {
      if (entry->begin < cursor)
        UL_FAIL(file, ": tensor '", entry->name, "' overlaps tensor '", previous->name,
                "' in the data buffer");
      if (entry->begin > cursor)
        UL_FAIL(file, ": data buffer has a hole of ", entry->begin - cursor,
                " bytes before tensor '", entry->name, "'");
      cursor = entry->end;
      previous = entry;
      names_.push_back(entry->name);
    }
    if (cursor != data_size)
      UL_FAIL(file, ": data buffer has ", data_size - cursor,
              " bytes after the last tensor that no tensor covers");
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) UL_FAIL(path_.string(), ": no tensor named '", name, "'");
  return it->second;
}

Tensor SafetensorsReader::read(const std::string& name, std::optional<DType> as) const {
  const SafetensorsEntry& e = entry(name);
  const std::string where = path_.string() + ": tensor '" + name + "'";
  const std::uint64_t offset = data_start_ + e.begin;
  const std::uint64_t bytes = e.end - e.begin;
  const bool is_float = e.dtype == "F32" || e.dtype == "BF16" || e.dtype == "F16";
  const bool is_int = e.dtype == "I32" || e.dtype == "I64";
  if (!is_float && !is_int)
    UL_FAIL(where, ": dtype ", e.dtype, " cannot be read (supported: F32, BF16, F16, I32, I64)");
  if (as && is_float && *as != DType::f32 && *as != DType::bf16)
    UL_FAIL(where, ": cannot convert ", e.dtype, " to ", dtype_name(*as));
  if (as && is_int && *as != DType::i32 && *as != DType::i64)
    UL_FAIL(where, ": cannot convert ", e.dtype, " to ", dtype_name(*as));

  Tensor stored;
  if (e.dtype == "F16") {
    // x: [numel] half bits -> f32
    std::vector<std::uint16_t> half(static_cast<std::size_t>(bytes) / sizeof(std::uint16_t));
    pread_all(fd_, half.data(), bytes, offset, path_);
    stored = Tensor::empty(e.shape, DType::f32);
    float* out = stored.data<float>();
    for (std::size_t i = 0; i < half.size(); ++i) out[i] = half_bits_to_float(half[i]);
  } else {
    const DType dtype = e.dtype == "F32"    ? DType::f32
                        : e.dtype == "BF16" ? DType::bf16
                        : e.dtype == "I32"  ? DType::i32
                                            : DType::i64;
    stored = Tensor::empty(e.shape, dtype);
    pread_all(fd_, stored.raw(), bytes, offset, path_);
  }
  if (!as || *as == stored.dtype()) return stored;
  return is_float ? stored.to(*as) : convert_integers(stored, *as, where);
}

Tensor SafetensorsReader::read_elements(const std::string& name, std::int64_t begin,
                                        std::int64_t end) const {
  const SafetensorsEntry& e = entry(name);
  const std::string where = path_.string() + ": tensor '" + name + "'";
  const std::int64_t numel = shape_numel(e.shape);
  if (begin < 0 || begin > end || end > numel)
    UL_FAIL(where, ": elements [", begin, ", ", end, ") are outside its ", numel, " elements");
  if (e.dtype != "F32" && e.dtype != "BF16" && e.dtype != "F16")
    UL_FAIL(where, ": dtype ", e.dtype, " cannot be read as f32 (supported: F32, BF16, F16)");
  const std::uint64_t size = element_size(e.dtype);
  const std::uint64_t offset = data_start_ + e.begin + static_cast<std::uint64_t>(begin) * size;
  const std::uint64_t bytes = static_cast<std::uint64_t>(end - begin) * size;
  Tensor out = Tensor::empty({end - begin}, DType::f32);
  float* o = out.data<float>();
  if (e.dtype == "F32") {
    pread_all(fd_, o, bytes, offset, path_);
    return out;
  }
  std::vector<std::uint16_t> bits(static_cast<std::size_t>(end - begin));  // BF16 or F16
  pread_all(fd_, bits.data(), bytes, offset, path_);
  const bool bf16_bits = e.dtype == "BF16";
  const auto n = static_cast<std::int64_t>(bits.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint16_t b = bits[static_cast<std::size_t>(i)];
    o[i] = bf16_bits ? bf16_to_float(bf16{b}) : half_bits_to_float(b);
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  check_tensor_list(tensors, file);
  std::vector<Tensor> cpu;
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");
  header["__metadata__"] = meta;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    cpu.push_back(tensor.device().is_cpu() ? tensor : tensor.to(Device::cpu()));
    const std::uint64_t bytes = tensor.nbytes();
    header[name] = {{"dtype", safetensors_dtype(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i)
    length_bytes[i] =
        static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));

  AtomicFile out(path);
  out.append(length_bytes, 8);
  out.append(text.data(), text.size());
  for (const Tensor& t : cpu) out.append(t.raw(), t.nbytes());
  out.commit();
}

CheckpointReader::CheckpointReader(const std::filesystem::path& directory) : directory_(directory) {
  std::error_code ec;
  if (!std::filesystem::is_directory(directory, ec))
    UL_FAIL(directory.string(), ": not a directory (expected a checkpoint directory)");
  const auto single = directory / kSingleCheckpointName;
  const auto index_path = directory / kCheckpointIndexName;
  if (std::filesystem::exists(single, ec)) {
    shards_.push_back(std::make_unique<SafetensorsReader>(single));
    for (const auto& name : shards_[0]->names()) shard_of_[name] = 0;
    return;
  }
  if (!std::filesystem::exists(index_path, ec))
    UL_FAIL(directory.string(), ": no ", kSingleCheckpointName, " or ", kCheckpointIndexName,
            " found");
  index_ = true;
  const std::string where = index_path.string();
  json index;
  try {
    const std::string text = read_text_file_capped(index_path, kMaxConfigFileBytes, where);
    check_nesting_depth(text, where);
    index = json::parse(text);
  } catch (const json::exception& e) {
    UL_FAIL(where, ": not valid JSON (", truncate_for_message(e.what(), 300), ")");
  }
  if (!index.is_object() || !index.contains("weight_map") || !index.at("weight_map").is_object())
    UL_FAIL(where, ": expected an object with a \"weight_map\" object");
  std::map<std::string, std::size_t> shard_index;
  for (const auto& [name, value] : index.at("weight_map").items()) {
    if (!value.is_string()) UL_FAIL(where, ": weight_map entry '", name, "' must be a string");
    const std::string shard = value.get<std::string>();
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos)
      UL_FAIL(where, ": shard name '", shard, "' for tensor '", name,
              "' must be a plain file name in the checkpoint directory");
    auto [it, inserted] = shard_index.emplace(shard, shards_.size());
    if (inserted) shards_.push_back(std::make_unique<SafetensorsReader>(directory / shard));
    if (!shards_[it->second]->contains(name))
      UL_FAIL(where, ": tensor '", name, "' is mapped to ", shard, " but that file lacks it");
    shard_of_[name] = it->second;
  }
}

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  for (const auto& [name, shard] : shard_of_) out.push_back(name);
  return out;
}

const SafetensorsReader& CheckpointReader::reader_of(const std::string& name) const {
  const auto it = shard_of_.find(name);
  if (it == shard_of_.end())
    UL_FAIL(directory_.string(), ": checkpoint has no tensor named '", name, "'");
  return *shards_[it->second];
}

const SafetensorsEntry& CheckpointReader::entry(const std::string& name) const {
  return reader_of(name).entry(name);
}

Tensor CheckpointReader::read(const std::string& name, std::optional<DType> as) const {
  return reader_of(name).read(name, as);
}

Tensor CheckpointReader::read_elements(const std::string& name, std::int64_t begin,
                                       std::int64_t end) const {
  return reader_of(name).read_elements(name, begin, end);
}

std::vector<std::string> write_sharded_safetensors(
    const std::filesystem::path& directory,
    const std::vector<std::pair<std::string, Tensor>>& tensors, std::uint64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata) {
  if (max_shard_bytes == 0) UL_FAIL(directory.string(), ": max_shard_bytes must be positive");
  check_tensor_list(tensors, directory.string());
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) UL_FAIL(directory.string(), ": cannot create directory: ", ec.message());

  // Greedy grouping in the given order.
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  std::uint64_t shard_bytes = 0, total_bytes = 0;
  for (const auto& item : tensors) {
    const std::uint64_t bytes = item.second.nbytes();
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(item);
    shard_bytes += bytes;
    total_bytes += bytes;
  }

  if (shards.size() == 1) {
    write_safetensors(directory / kSingleCheckpointName, tensors, metadata);
    std::filesystem::remove(directory / kCheckpointIndexName, ec);
    return {kSingleCheckpointName};
  }
  std::vector<std::string> written;
  json weight_map = json::object();
  for (std::size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_safetensors(directory / name, shards[i], metadata);
    for (const auto& item : shards[i]) weight_map[item.first] = name;
    written.push_back(name);
  }
  const json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  AtomicFile out(directory / kCheckpointIndexName);
  out.append(text.data(), text.size());
  out.commit();
  std::filesystem::remove(directory / kSingleCheckpointName, ec);
  written.push_back(kCheckpointIndexName);
  return written;
}

}  // namespace ulysses::io
