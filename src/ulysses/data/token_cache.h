// The tokenization cache of text JSON Lines (`--data text.jsonl` with a tokenizer.json):
// tokenized documents in the token-file format (data::write_token_files, docs/formats.md) plus a
// manifest.json holding the cache key, in one entry directory per (input, tokenizer, mode).
//
// Key: the input's absolute path, size and modification time (ns), the FNV-1a 64 hash of the
// tokenizer.json bytes (the text path reads nothing else of the model: its BOS/EOS come from the
// post-processor in that file), the mode of the first line ("text" or "prompt_completion") and
// kFormatVersion. The manifest also holds the document and token counts and a hash of each file;
// read_token_cache checks all of it and never trusts an entry that does not match.
//
// Concurrency: every rank opens the data. Writers build an entry in a unique temporary
// directory inside the cache directory, fsync it and rename it into place; a writer that loses
// the rename race removes its copy. Readers see a complete entry or none. No call is collective.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ulysses/data/source.h"

namespace ulysses::data {

inline constexpr int kTokenCacheFormatVersion = 1;

struct TokenCacheKey {
  std::string input;  // absolute path
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string tokenizer_hash;  // hex FNV-1a 64 of tokenizer.json
  std::string mode;            // "text" | "prompt_completion"
  int format_version = kTokenCacheFormatVersion;
  nlohmann::json to_json() const;
};

// The key of `data_path` tokenized by `tokenizer_path` (a tokenizer.json file or a directory
// holding one). Throws Error when either cannot be read.
TokenCacheKey token_cache_key(const std::string& data_path, const std::string& tokenizer_path);

// The cache directory for --data-cache-dir `option`: "" = `.ulysses_cache` next to the data
// file; "none" = no cache (returns ""); anything else as given.
std::string token_cache_dir(const std::string& option, const std::string& data_path);

// The entry directory of `key` inside `cache_dir`: <input file name>-<hash of the key>.
std::string token_cache_entry(const std::string& cache_dir, const TokenCacheKey& key);

// The documents of a valid entry (memory-mapped token files), or null when there is no entry;
// an entry that does not match `key` or is damaged is ignored with one info log line.
std::unique_ptr<DocumentSource> read_token_cache(const std::string& entry, const TokenCacheKey& key,
                                                 std::int64_t vocab);

// Writes `documents` (non-empty ones) as the entry of `key`. Returns true when a valid entry is
// in place afterwards (written here or by a concurrent writer); on any failure (directory not
// writable, disk full) logs one warning, leaves no temporary behind and returns false.
bool write_token_cache(const std::string& entry, const TokenCacheKey& key,
                       const std::vector<Document>& documents);

}  // namespace ulysses::data
