#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "ulysses/core/error.h"
#include "ulysses/core/parse_limits.h"
#include "ulysses/core/rng.h"
#include "ulysses/data/long_documents.h"
#include "ulysses/data/source.h"
#include "ulysses/data/text_data.h"
#include "ulysses/data/token_cache.h"
#include "ulysses/data/token_files.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::data {

namespace fs = std::filesystem;

namespace {

// ---- JSON Lines ---------------------------------------------------------------------------

class JsonlSource final : public DocumentSource {
 public:
  JsonlSource(const std::string& path, std::int64_t vocab) : path_(path), vocab_(vocab) {
    std::ifstream in(path);
    if (!in) UL_FAIL("--data ", path, ": cannot open the file");
    std::string line;
    std::int64_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      Document doc = parse(line, number);  // checks every id and label against the vocabulary
      if (doc.tokens.empty()) continue;
      documents_.push_back(std::move(doc));
    }
    if (documents_.empty()) UL_FAIL("--data ", path, ": no documents (empty file?)");
  }

  std::string describe() const override {
    return detail::concat(path_, " (JSON Lines, ", documents_.size(), " documents)");
  }
  std::int64_t size() const override { return static_cast<std::int64_t>(documents_.size()); }
  Document get(std::int64_t index) const override {
    return documents_.at(static_cast<std::size_t>(index));
  }

 private:
  std::string where(std::int64_t line) const { return detail::concat(path_, ":", line); }

  // The elements of `array` ("input_ids" or "labels"): each must be an integer (not a float,
  // not a boolean) that is `also_allowed` or inside [0, vocab).
  std::vector<std::int32_t> integers(const nlohmann::json& array, const char* key,
                                     std::int64_t number, std::int64_t also_allowed) const {
    std::vector<std::int32_t> out;
    out.reserve(array.size());
    for (std::size_t i = 0; i < array.size(); ++i) {
      const nlohmann::json& value = array[i];
      const std::string at = detail::concat(where(number), ": \"", key, "\"[", i, "]");
      if (!value.is_number_integer())
        UL_FAIL(at, " is ", truncate_for_message(value.dump()), ": token ids must be integers");
      const bool in_vocab =
          value.is_number_unsigned()
              ? value.get<std::uint64_t>() < static_cast<std::uint64_t>(vocab_)
              : value.get<std::int64_t>() >= 0 && value.get<std::int64_t>() < vocab_;
      if (!in_vocab && !(value.is_number_integer() && !value.is_number_unsigned() &&
                         value.get<std::int64_t>() == also_allowed && also_allowed < 0))
        UL_FAIL(at, ": token id ", truncate_for_message(value.dump()),
                " is outside the vocabulary (vocab_size ", vocab_, ")",
                also_allowed < 0 ? " and is not -100 (ignored)" : "",
                "; was the data tokenized for this model?");
      out.push_back(static_cast<std::int32_t>(value.get<std::int64_t>()));
    }
    return out;
  }

  Document parse(const std::string& line, std::int64_t number) const {
    check_nesting_depth(line, where(number));
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      UL_FAIL(where(number), ": invalid JSON (", e.what(), ")");
    }
    if (!j.is_object() || !j.contains("input_ids") || !j["input_ids"].is_array())
      UL_FAIL(where(number),
              ": each line needs an \"input_ids\" array of token ids (or \"text\", or "
              "\"prompt\" and \"completion\", with a --model directory holding a "
              "tokenizer.json)");
    Document doc;
    doc.tokens = integers(j["input_ids"], "input_ids", number, 0);
    if (j.contains("labels") && !j["labels"].is_null()) {
      if (!j["labels"].is_array())
        UL_FAIL(where(number), ": \"labels\" must be an array of token ids (or -100)");
      doc.labels = integers(j["labels"], "labels", number, ops::kIgnoreIndex);
    }
    if (!doc.labels.empty() && doc.labels.size() != doc.tokens.size())
      UL_FAIL(where(number), ": \"labels\" has ", doc.labels.size(), " entries but \"input_ids\" ",
              doc.tokens.size(), " (labels are unshifted, one per token)");
    return doc;
  }

  std::string path_;
  std::int64_t vocab_;
  std::vector<Document> documents_;
};

// ---- epochs -------------------------------------------------------------------------------

class EpochShuffled final : public DocumentSource {
 public:
  EpochShuffled(std::unique_ptr<DocumentSource> source, std::uint64_t seed)
      : source_(std::move(source)), seed_(seed) {
    UL_CHECK(source_->size() > 0, "epoch shuffling needs a finite, non-empty source");
  }
  std::string describe() const override { return source_->describe() + ", shuffled per epoch"; }
  std::int64_t size() const override { return -1; }
  std::int64_t documents_per_epoch() const override { return source_->size(); }
  Document get(std::int64_t index) const override {
    const std::int64_t n = source_->size();
    const std::int64_t epoch = index / n;
    if (epoch != cached_epoch_) {
      order_.resize(static_cast<std::size_t>(n));
      std::iota(order_.begin(), order_.end(), 0);
      Rng rng = Rng::derive(seed_, {0xE90Cu, static_cast<std::uint64_t>(epoch)});
      for (std::int64_t i = n - 1; i > 0; --i)  // Fisher-Yates
        std::swap(order_[static_cast<std::size_t>(i)],
                  order_[rng.below(static_cast<std::uint64_t>(i + 1))]);
      cached_epoch_ = epoch;
    }
    return source_->get(order_[static_cast<std::size_t>(index % n)]);
  }

 private:
  std::unique_ptr<DocumentSource> source_;
  std::uint64_t seed_;
  mutable std::int64_t cached_epoch_ = -1;  // cache only; the result depends on index alone
  mutable std::vector<std::int64_t> order_;
};

}  // namespace

std::unique_ptr<DocumentSource> make_jsonl_source(const std::string& path, std::int64_t vocab) {
  return std::make_unique<JsonlSource>(path, vocab);
}

std::unique_ptr<DocumentSource> make_epoch_shuffled(std::unique_ptr<DocumentSource> source,
                                                    std::uint64_t seed) {
  return std::make_unique<EpochShuffled>(std::move(source), seed);
}

std::unique_ptr<DocumentSource> open_data(const DataOptions& o) {
  if (o.data == "synthetic-copy" || o.data == "synthetic-random") {
    CopyTaskOptions copy;
    copy.learn_all = o.data == "synthetic-random";
    copy.vocab_size = o.vocab_size;
    copy.min_length = o.copy_min_length;
    copy.max_length = o.copy_max_length;
    copy.seed = o.seed;
    return make_copy_task(copy);
  }
  std::unique_ptr<DocumentSource> finite;
  if (o.data.ends_with(".jsonl") && fs::is_regular_file(o.data)) {
    if (jsonl_holds_text(o.data)) {
      const bool has_tokenizer =
          !o.tokenizer.empty() && (fs::is_regular_file(o.tokenizer) ||
                                   fs::exists(fs::path(o.tokenizer) / "tokenizer.json"));
      if (!has_tokenizer)
        UL_FAIL("--data ", o.data, ": the lines hold text but the model (", o.tokenizer,
                ") has no tokenizer.json; use a Hugging Face model directory with one, or "
                "tokenize first: ulysses tokenize --tokenizer DIR --input ",
                o.data, " --output OUT");
      finite = make_text_jsonl_source(o.data, o.tokenizer, o.vocab_size,
                                      token_cache_dir(o.data_cache_dir, o.data));
    } else {
      finite = make_jsonl_source(o.data, o.vocab_size);
    }
  } else if (fs::is_directory(o.data) && fs::exists(fs::path(o.data) / "tokens.bin")) {
    finite = make_token_file_source(o.data, o.vocab_size);
  }
  if (finite) {
    const LongDocuments mode = parse_long_documents(o.long_documents);
    if (o.max_seq_length > 0)
      finite = make_long_document_source(std::move(finite), o.max_seq_length, mode);
    if (!o.shuffle) return finite;
    return make_epoch_shuffled(std::move(finite), o.seed);
  }
  UL_FAIL("--data ", o.data,
          ": not a data source (use synthetic-copy, synthetic-random, a .jsonl file, or a "
          "directory holding tokens.bin and offsets.bin; see docs/formats.md)");
}

}  // namespace ulysses::data
