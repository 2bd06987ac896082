#include "ulysses/data/text_data.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ulysses/core/error.h"
#include "ulysses/core/log.h"
#include "ulysses/data/token_cache.h"
#include "ulysses/data/token_files.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::data {

namespace fs = std::filesystem;

namespace {

// One input line: its text pieces before tokenization.
struct TextRecord {
  std::string prompt;  // empty for "text" records
  std::string text;    // "text", or the completion
  bool masked = false;
  std::string where;  // file:line
};

bool is_blank(const std::string& line) {
  return line.find_first_not_of(" \t\r") == std::string::npos;
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto& v = j.at(key);
  if (!v.is_string()) UL_FAIL(where, ": \"", key, "\" must be a string");
  return v.get<std::string>();
}

TextRecord parse_record(const std::string& line, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    UL_FAIL(where, ": invalid JSON (", e.what(), ")");
  }
  if (!j.is_object())
    UL_FAIL(where,
            ": each line needs a JSON object with \"text\", or \"prompt\" and "
            "\"completion\"");
  TextRecord r;
  r.where = where;
  if (j.contains("text")) {
    r.text = string_field(j, "text", where);
  } else if (j.contains("prompt") || j.contains("completion")) {
    if (!j.contains("prompt") || !j.contains("completion"))
      UL_FAIL(where, ": \"prompt\" and \"completion\" go together (one of them is missing)");
    r.prompt = string_field(j, "prompt", where);
    r.text = string_field(j, "completion", where);
    r.masked = true;
  } else {
    UL_FAIL(where,
            ": no \"text\" field (nor \"prompt\" and \"completion\"); already "
            "tokenized data uses \"input_ids\"");
  }
  for (const std::string* s : {&r.prompt, &r.text})
    if (const auto bad = io::find_invalid_utf8(*s); bad != std::string::npos)
      UL_FAIL(where, ": text is not valid UTF-8 (byte ", bad, " of the string)");
  return r;
}

std::vector<TextRecord> read_records(const std::vector<std::string>& paths) {
  std::vector<TextRecord> records;
  for (const std::string& path : paths) {
    std::ifstream in(path);
    if (!in) UL_FAIL(path, ": cannot open the file");
    std::string line;
    for (std::int64_t number = 1; std::getline(in, line); ++number)
      if (!is_blank(line)) records.push_back(parse_record(line, detail::concat(path, ":", number)));
  }
  return records;
}

}  // namespace

std::vector<Document> tokenize_jsonl_files(const std::vector<std::string>& paths,
                                           const io::Tokenizer& tok, int num_threads) {
  const std::vector<TextRecord> records = read_records(paths);
  // One batch of strings: the texts, then the prompts of masked records.
  std::vector<std::string> texts;
  std::vector<std::size_t> prompt_index(records.size(), 0);
  texts.reserve(records.size());
  for (const TextRecord& r : records) texts.push_back(r.text);
  for (std::size_t i = 0; i < records.size(); ++i)
    if (records[i].masked) {
      prompt_index[i] = texts.size();
      texts.push_back(records[i].prompt);
    }
  // Whole texts get the post-processor's tokens; prompt/completion pieces get them once around
  // the pair, added below.
  std::vector<std::vector<io::TokenId>> plain = tok.encode_batch(texts, false, num_threads);
  std::vector<Document> docs(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    Document& d = docs[i];
    const auto& prefix = tok.prefix_ids();
    const auto& suffix = tok.suffix_ids();
    d.tokens = prefix;
    if (records[i].masked) {
      const auto& prompt = plain[prompt_index[i]];
      d.tokens.insert(d.tokens.end(), prompt.begin(), prompt.end());
      d.labels.assign(d.tokens.size(), ops::kIgnoreIndex);
    }
    d.tokens.insert(d.tokens.end(), plain[i].begin(), plain[i].end());
    d.tokens.insert(d.tokens.end(), suffix.begin(), suffix.end());
    if (records[i].masked) {
      const auto learned_from = static_cast<std::ptrdiff_t>(d.labels.size());
      d.labels.insert(d.labels.end(), d.tokens.begin() + learned_from, d.tokens.end());
    }
  }
  return docs;
}

bool jsonl_holds_text(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (is_blank(line)) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      return j.is_object() && !j.contains("input_ids") &&
             (j.contains("text") || j.contains("prompt"));
    } catch (const nlohmann::json::exception&) {
      return false;  // the JSON Lines reader reports it with its line number
    }
  }
  return false;
}

namespace {

class TextJsonlSource final : public DocumentSource {
 public:
  TextJsonlSource(const std::string& path, const std::string& tokenizer_path, std::int64_t vocab)
      : path_(path) {
    const io::Tokenizer tok = io::Tokenizer::load(tokenizer_path);
    std::vector<Document> docs = tokenize_jsonl_files({path}, tok);
    for (Document& d : docs) {
      for (io::TokenId t : d.tokens)
        if (t < 0 || t >= vocab)
          UL_FAIL("--data ", path, ": the tokenizer ", tokenizer_path, " gives token id ", t,
                  ", outside the model's vocabulary (vocab_size ", vocab, ")");
      if (d.tokens.empty()) continue;
      if (d.labels == d.tokens) d.labels.clear();  // all learned: the same as no labels
      tokens_ += static_cast<std::int64_t>(d.tokens.size());
      documents_.push_back(std::move(d));
    }
    if (documents_.empty()) UL_FAIL("--data ", path, ": no documents (empty file?)");
  }
  std::string describe() const override {
    return detail::concat(path_, " (text JSON Lines, ", documents_.size(), " documents, ", tokens_,
                          " tokens)");
  }
  std::int64_t size() const override { return static_cast<std::int64_t>(documents_.size()); }
  Document get(std::int64_t index) const override {
    return documents_.at(static_cast<std::size_t>(index));
  }
  const std::vector<Document>& documents() const { return documents_; }
  std::int64_t tokens() const { return tokens_; }

 private:
  std::string path_;
  std::vector<Document> documents_;
  std::int64_t tokens_ = 0;
};

}  // namespace

std::unique_ptr<DocumentSource> make_text_jsonl_source(const std::string& path,
                                                       const std::string& tokenizer_path,
                                                       std::int64_t vocab_size,
                                                       const std::string& cache_dir) {
  TokenCacheKey key;
  std::string entry;
  if (!cache_dir.empty()) {
    key = token_cache_key(path, tokenizer_path);
    entry = token_cache_entry(cache_dir, key);
    if (auto cached = read_token_cache(entry, key, vocab_size)) return cached;
  }
  const auto start = std::chrono::steady_clock::now();
  auto source = std::make_unique<TextJsonlSource>(path, tokenizer_path, vocab_size);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char took[32];
  std::snprintf(took, sizeof took, "%.2f", seconds);
  const std::string done = detail::concat("tokenized ", source->size(), " documents, ",
                                          source->tokens(), " tokens in ", took, " s");
  if (!entry.empty() && write_token_cache(entry, key, source->documents()))
    log_info(done, "; cached in ", entry);
  else
    log_info(done);
  return source;
}

void write_jsonl_documents(const std::string& path, const std::vector<Document>& documents) {
  const fs::path out(path);
  const fs::path tmp = temporary_sibling(out);
  {
    std::ofstream f(tmp);
    if (!f) UL_FAIL("--output ", path, ": cannot write ", tmp.string());
    for (const Document& d : documents) {
      nlohmann::json j;
      j["input_ids"] = d.tokens;
      if (!d.labels.empty()) j["labels"] = d.labels;
      f << j.dump() << '\n';
    }
    if (!f) UL_FAIL("--output ", path, ": write failed (disk full?)");
  }
  fs::rename(tmp, out);
}

}  // namespace ulysses::data
