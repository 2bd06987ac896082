// The token-file format of `--data DIR` (docs/formats.md): tokens.bin (uint32 ids),
// offsets.bin (uint64 document boundaries) and an optional loss_mask.bin (one byte per token),
// read through memory maps with every size, offset and id validated, and written atomically.
// `ulysses tokenize` and the tokenization cache (data/token_cache.h) write it; the token-file
// source reads it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ulysses/data/source.h"

namespace ulysses::data {

// Writes token files (tokens.bin, offsets.bin, and loss_mask.bin when a document has labels)
// into the directory `dir`, which must not exist: they are written into a temporary directory
// next to it that is renamed at the end, so `dir` never holds half-written files. Documents
// without tokens are skipped (returns how many).
std::int64_t write_token_files(const std::string& dir, const std::vector<Document>& documents);

// Error naming `where` unless 0 <= token < vocab.
void check_token_id(std::int64_t token, std::int64_t vocab, const std::string& where);

// A temporary sibling of `path` (same directory, so rename is atomic), unique per process.
std::filesystem::path temporary_sibling(const std::filesystem::path& path);

}  // namespace ulysses::data
