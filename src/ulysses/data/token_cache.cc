#include "ulysses/data/token_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "ulysses/core/error.h"
#include "ulysses/core/log.h"
#include "ulysses/data/text_data.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::data {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kFnvOffset = 1469598103934665603ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

std::uint64_t fnv1a64(const char* data, std::size_t n, std::uint64_t h = kFnvOffset) {
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= kFnvPrime;
  }
  return h;
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Hex FNV-1a 64 of a whole file, read in chunks; throws Error when it cannot be read.
std::string file_hash(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) UL_FAIL(path.string(), ": cannot open");
  std::vector<char> buf(1 << 20);
  std::uint64_t h = kFnvOffset;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h = fnv1a64(buf.data(), static_cast<std::size_t>(in.gcount()), h);
  }
  if (in.bad()) UL_FAIL(path.string(), ": read failed");
  return hex64(h);
}

// "text" or "prompt_completion": the kind of the first non-blank line.
std::string first_line_mode(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      return j.is_object() && j.contains("text") ? "text" : "prompt_completion";
    } catch (const nlohmann::json::exception&) {
      return "unknown";  // the tokenizer reports the line
    }
  }
  return "empty";
}

void fsync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) UL_FAIL(path.string(), ": cannot open for fsync (", std::strerror(errno), ")");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) UL_FAIL(path.string(), ": fsync failed (", std::strerror(errno), ")");
}

const char* const kFiles[] = {"tokens.bin", "offsets.bin", "loss_mask.bin"};

// "" when the entry's manifest matches `key` and its files match the manifest; else why not.
std::string entry_problem(const fs::path& entry, const TokenCacheKey& key,
                          nlohmann::json* manifest_out) {
  std::ifstream in(entry / "manifest.json");
  if (!in) return "no manifest.json";
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(in);
    if (m.at("key") != key.to_json()) return "its key differs (input or tokenizer changed)";
    for (const char* name : kFiles) {
      const fs::path file = entry / name;
      const auto& files = m.at("files");
      if (!files.contains(name)) {
        if (fs::exists(file)) return detail::concat(name, " is not in the manifest");
        continue;
      }
      std::error_code ec;
      const auto bytes = fs::file_size(file, ec);
      if (ec) return detail::concat(name, " is missing");
      if (bytes != files.at(name).at("bytes").get<std::uint64_t>())
        return detail::concat(name, " has ", bytes, " bytes, the manifest says ",
                              files.at(name).at("bytes").get<std::uint64_t>());
      if (file_hash(file) != files.at(name).at("fnv1a64").get<std::string>())
        return detail::concat(name, " does not match its hash");
    }
    if (!m.at("documents").is_number_integer() || !m.at("tokens").is_number_integer())
      return "bad counts in manifest.json";
  } catch (const std::exception& e) {
    return detail::concat("damaged manifest.json (", e.what(), ")");
  }
  if (manifest_out) *manifest_out = std::move(m);
  return "";
}

// The documents of a cache entry: token files, described as the text file they came from.
class CachedTextSource final : public DocumentSource {
 public:
  CachedTextSource(std::unique_ptr<DocumentSource> files, std::string input, std::string entry,
                   std::int64_t tokens)
      : files_(std::move(files)),
        input_(std::move(input)),
        entry_(std::move(entry)),
        tokens_(tokens) {}
  std::string describe() const override {
    return detail::concat(input_, " (text JSON Lines, ", files_->size(), " documents, ", tokens_,
                          " tokens, from the tokenized cache ", entry_, ")");
  }
  std::int64_t size() const override { return files_->size(); }
  // A document whose tokens are all learned has no labels, as in the text source.
  Document get(std::int64_t index) const override {
    Document d = files_->get(index);
    if (std::none_of(d.labels.begin(), d.labels.end(),
                     [](std::int32_t l) { return l == ops::kIgnoreIndex; }))
      d.labels.clear();
    return d;
  }

 private:
  std::unique_ptr<DocumentSource> files_;
  std::string input_, entry_;
  std::int64_t tokens_;
};

// Removes `path` (an entry or a temporary) without leaving a half-removed entry visible under
// its name: renamed to a unique name first.
void remove_aside(const fs::path& path) {
  std::string tmpl = (path.parent_path() / ".trash-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return;
  std::error_code ec;
  if (::rename(path.c_str(), (fs::path(tmpl) / "x").c_str()) != 0) {
    fs::remove(tmpl, ec);
    return;
  }
  fs::remove_all(tmpl, ec);
}

}  // namespace

nlohmann::json TokenCacheKey::to_json() const {
  return {{"input", input},       {"size", size},
          {"mtime_ns", mtime_ns}, {"tokenizer_fnv1a64", tokenizer_hash},
          {"mode", mode},         {"format_version", format_version}};
}

TokenCacheKey token_cache_key(const std::string& data_path, const std::string& tokenizer_path) {
  TokenCacheKey k;
  k.input = fs::absolute(data_path).lexically_normal().string();
  struct stat st {};
  if (::stat(k.input.c_str(), &st) != 0) UL_FAIL("--data ", data_path, ": cannot stat the file");
  k.size = static_cast<std::uint64_t>(st.st_size);
  k.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  const fs::path tok = fs::is_directory(tokenizer_path)
                           ? fs::path(tokenizer_path) / "tokenizer.json"
                           : fs::path(tokenizer_path);
  k.tokenizer_hash = file_hash(tok);
  k.mode = first_line_mode(data_path);
  return k;
}

std::string token_cache_dir(const std::string& option, const std::string& data_path) {
  if (option == "none") return "";
  if (!option.empty()) return option;
  return (fs::absolute(data_path).lexically_normal().parent_path() / ".ulysses_cache").string();
}

std::string token_cache_entry(const std::string& cache_dir, const TokenCacheKey& key) {
  const std::string text = key.to_json().dump();
  return (fs::path(cache_dir) / detail::concat(fs::path(key.input).filename().string(), "-",
                                               hex64(fnv1a64(text.data(), text.size()))))
      .string();
}

std::unique_ptr<DocumentSource> read_token_cache(const std::string& entry, const TokenCacheKey& key,
                                                 std::int64_t vocab) {
  std::error_code ec;
  if (!fs::exists(entry, ec)) return nullptr;
  nlohmann::json manifest;
  std::string problem = entry_problem(entry, key, &manifest);
  std::unique_ptr<DocumentSource> files;
  if (problem.empty()) {
    try {
      files = make_token_file_source(entry, vocab);
      if (files->size() != manifest.at("documents").get<std::int64_t>())
        problem = "the document count differs from the manifest";
    } catch (const std::exception& e) {
      problem = e.what();
    }
  }
  if (!problem.empty()) {
    log_info("ignoring the tokenized cache ", entry, ": ", problem, "; tokenizing again");
    return nullptr;
  }
  const auto tokens = manifest.at("tokens").get<std::int64_t>();
  log_info("read the tokenized cache ", entry, " (", files->size(), " documents, ", tokens,
           " tokens)");
  return std::make_unique<CachedTextSource>(std::move(files), key.input, entry, tokens);
}

bool write_token_cache(const std::string& entry_path, const TokenCacheKey& key,
                       const std::vector<Document>& documents) {
  const fs::path entry(entry_path);
  const fs::path dir = entry.parent_path();
  std::string tmp;
  bool made_tmp = false;
  try {
    fs::create_directories(dir);
    tmp = (dir / detail::concat(".tmp-", entry.filename().string(), "-XXXXXX")).string();
    if (::mkdtemp(tmp.data()) == nullptr)
      UL_FAIL("cannot create a directory in ", dir.string(), " (", std::strerror(errno), ")");
    made_tmp = true;
    const fs::path built = fs::path(tmp) / "entry";
    write_token_files(built.string(), documents);
    nlohmann::json m;
    m["key"] = key.to_json();
    std::int64_t docs = 0, tokens = 0;
    for (const Document& d : documents)
      if (!d.tokens.empty()) {
        ++docs;
        tokens += static_cast<std::int64_t>(d.tokens.size());
      }
    m["documents"] = docs;
    m["tokens"] = tokens;
    m["files"] = nlohmann::json::object();
    for (const char* name : kFiles)
      if (fs::exists(built / name)) {
        m["files"][name] = {{"bytes", fs::file_size(built / name)},
                            {"fnv1a64", file_hash(built / name)}};
        fsync_path(built / name, false);
      }
    {
      std::ofstream out(built / "manifest.json");
      out << m.dump(1) << '\n';
      if (!out) UL_FAIL((built / "manifest.json").string(), ": write failed (disk full?)");
    }
    fsync_path(built / "manifest.json", false);
    fsync_path(built, true);
    bool placed = ::rename(built.c_str(), entry.c_str()) == 0;
    if (!placed && (errno == ENOTEMPTY || errno == EEXIST)) {
      // Another rank won the race (its entry is as good as ours), or a damaged entry is there.
      if (entry_problem(entry, key, nullptr).empty()) {
        fs::remove_all(tmp);
        return true;
      }
      remove_aside(entry);
      placed = ::rename(built.c_str(), entry.c_str()) == 0;
      if (!placed && entry_problem(entry, key, nullptr).empty()) {
        fs::remove_all(tmp);
        return true;
      }
    }
    if (!placed) UL_FAIL("cannot rename into ", entry_path, " (", std::strerror(errno), ")");
    fsync_path(dir, true);
    fs::remove_all(tmp);
    return true;
  } catch (const std::exception& e) {
    std::error_code ec;
    if (made_tmp) fs::remove_all(tmp, ec);
    log_warn("--data-cache-dir ", dir.string(), ": cannot write the tokenized cache (", e.what(),
             "); continuing without it");
    return false;
  }
}

}  // namespace ulysses::data
