// Text data through a Hugging Face tokenizer (io/tokenizer.h): JSON Lines with "text", or
// "prompt" and "completion" (loss on the completion only), to documents; and the writers of
// `ulysses tokenize` (token files or {"input_ids"} JSON Lines, docs/formats.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ulysses/data/source.h"
#include "ulysses/data/token_files.h"  // write_token_files, with the format it writes
#include "ulysses/io/tokenizer.h"

namespace ulysses::data {

// Documents of JSON Lines files, in file and line order (blank lines skipped). A line is
// {"text": "..."}: tokenizer.encode(text) with special tokens (BOS/EOS as the tokenizer's
// post-processor adds them, e.g. BOS for Llama-3, none for Qwen2), every token learned; or
// {"prompt": "...", "completion": "..."}: prefix + encode(prompt) + encode(completion) + suffix
// (prefix/suffix: the post-processor's ids), labels -100 on the prefix and the prompt.
// (make_text_jsonl_source drops labels that equal the tokens: all learned, as for "text".)
// Tokenizes on `num_threads` threads (0: all); the result does not depend on it. Errors name
// file:line (not JSON, no text field, a field that is not a string, invalid UTF-8).
std::vector<Document> tokenize_jsonl_files(const std::vector<std::string>& paths,
                                           const io::Tokenizer& tokenizer, int num_threads = 0);

// True when the first non-blank line of a JSON Lines file holds "text" or "prompt" (and no
// "input_ids"): text that needs a tokenizer.
bool jsonl_holds_text(const std::string& path);

// A finite source of the documents of a text JSON Lines file, tokenized when opened; token ids
// are checked against vocab_size (a tokenizer of another model is an error naming the file).
// With a `cache_dir` (data/token_cache.h; "" = none), a valid cache entry of the same input and
// tokenizer is read (memory-mapped) instead, and a fresh tokenization is written there (a cache
// that cannot be written is a warning, not an error). Not collective: every rank may call it.
std::unique_ptr<DocumentSource> make_text_jsonl_source(const std::string& path,
                                                       const std::string& tokenizer_path,
                                                       std::int64_t vocab_size,
                                                       const std::string& cache_dir = "");

// Writes one {"input_ids": [...]} line per document (with "labels" when it has labels), in
// order, to a temporary file renamed to `path`.
void write_jsonl_documents(const std::string& path, const std::vector<Document>& documents);

}  // namespace ulysses::data
