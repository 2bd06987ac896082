// A Hugging Face tokenizer (tokenizer.json) in C++: encodes text to the ids `tokenizers` gives
// for `tokenizer(text)["input_ids"]` (Tokenizer.encode(text, add_special_tokens=True)).
//
// Supported (what Llama-3, Qwen2/Qwen3 and GPT-2 style tokenizer.json files use):
//   added tokens   matched leftmost-longest on the raw text (normalized=false) or on the
//                  normalized text (normalized=true), with single_word, lstrip and rstrip;
//   normalizer     null, NFC, NFD, NFKC, NFKD and Sequence of them (ICU);
//   pre_tokenizer  Split (Regex or String pattern, behavior Isolated or Removed, PCRE2 with
//                  Unicode classes), ByteLevel (add_prefix_space, use_regex) and Sequence;
//   model          BPE (merges by rank, ignore_merges, unk_token, fuse_unk, byte_fallback);
//   post_processor TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence;
//   decoder        ByteLevel.
// Anything else is refused when loading, with a message naming the file and the key.
// truncation and padding in tokenizer.json are ignored (the data pipeline packs sequences).
//
// Thread safety: a loaded Tokenizer is immutable; encode() and decode() may be called from any
// number of threads at once. encode_batch() starts its own threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ulysses/io/bpe_model.h"
#include "ulysses/io/pre_tokenizer.h"
#include "ulysses/io/unicode_text.h"

namespace ulysses::io {

struct AddedToken {
  TokenId id = -1;
  std::string content;  // as written in tokenizer.json
  std::string matched;  // content, normalized when `normalized` is set
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// Per-thread memo of word -> ids (bounded); makes repeated words cheap.
using WordCache = std::unordered_map<std::string, std::vector<TokenId>>;

class Tokenizer {
 public:
  // Loads `path`: a tokenizer.json file, or a directory holding one. Throws Error naming the
  // file when it is missing, is not JSON, or uses a component listed as unsupported above.
  static Tokenizer load(const std::filesystem::path& path);
  // From parsed tokenizer.json; `where` names it in error messages.
  Tokenizer(const nlohmann::json& tokenizer_json, const std::string& where);

  // The ids of `text` (UTF-8; throws Error naming the byte offset when it is not valid UTF-8).
  // add_special_tokens applies the post-processor (e.g. BOS for Llama-3).
  std::vector<TokenId> encode(std::string_view text, bool add_special_tokens = true,
                              WordCache* cache = nullptr) const;

  // encode() of every text on `num_threads` threads (0: all hardware threads); result i is
  // the ids of texts[i], independent of the number of threads.
  std::vector<std::vector<TokenId>> encode_batch(const std::vector<std::string>& texts,
                                                 bool add_special_tokens = true,
                                                 int num_threads = 0) const;

  // Text of `ids` as tokenizers' decode (ByteLevel decoder; invalid UTF-8 becomes U+FFFD).
  // Throws Error for an id outside the vocabulary.
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens = false) const;

  // Id of a vocabulary or added token, or -1.
  TokenId token_to_id(std::string_view token) const;
  // Number of ids: one more than the largest id of the vocabulary and the added tokens.
  std::size_t vocab_size() const;
  // The ids the post-processor puts before and after a single sequence.
  const std::vector<TokenId>& prefix_ids() const { return prefix_ids_; }
  const std::vector<TokenId>& suffix_ids() const { return suffix_ids_; }

 private:
  struct Segment {
    std::string text;
    TokenId id;  // an added token, or -1 for text still to tokenize
  };
  void split_added(std::string_view text, bool normalized_tokens, std::vector<Segment>& out) const;
  std::string normalize(std::string_view text) const;
  void read_normalizer(const nlohmann::json& j, const std::string& where);
  void read_post_processor(const nlohmann::json& j, const std::string& where);

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::vector<AddedToken> added_;
  std::unordered_map<std::string, TokenId> added_by_content_;
  std::unordered_map<TokenId, std::size_t> added_by_id_;
  bool first_byte_raw_[256] = {};   // a raw-matched added token starts with this byte
  bool first_byte_norm_[256] = {};  // a normalized-matched added token starts with this byte
  std::vector<NormalForm> normal_forms_;
  std::vector<TokenId> prefix_ids_, suffix_ids_;
  bool byte_level_decoder_ = false;
  ByteLevelAlphabet alphabet_;
  std::string where_;
};

}  // namespace ulysses::io
