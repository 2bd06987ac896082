// The BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE", ...}): vocabulary,
// merges by rank, ignore_merges, unk_token and byte_fallback, as `tokenizers` applies them to one
// pre-tokenized word.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ulysses::io {

using TokenId = std::int32_t;

class BpeModel {
 public:
  // Reads the "model" object; `where` names the file in error messages. Throws Error for a
  // model that is not BPE, or uses options this implementation does not support (dropout,
  // continuing_subword_prefix, end_of_word_suffix).
  BpeModel(const nlohmann::json& model, const std::string& where);

  // Appends the ids of one word (already mapped to the model's alphabet, e.g. by ByteLevel).
  void tokenize(std::string_view word, std::vector<TokenId>& out) const;

  // The vocabulary id of `token`, or -1.
  TokenId token_to_id(std::string_view token) const;
  // The token of `id`, or nullptr when the vocabulary has no such id.
  const std::string* id_to_token(TokenId id) const;
  std::size_t vocab_size() const { return id_to_token_.size(); }

 private:
  struct Merge {
    std::int32_t rank;
    TokenId merged;
  };
  static std::uint64_t pair_key(TokenId a, TokenId b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  void initial_symbols(std::string_view word, std::vector<TokenId>& symbols) const;

  std::unordered_map<std::string, TokenId> vocab_;
  std::vector<std::string> id_to_token_;  // "" for ids the vocabulary skips
  std::vector<bool> has_id_;
  std::unordered_map<std::uint64_t, Merge> merges_;
  TokenId unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  TokenId byte_ids_[256];  // <0xXX> tokens for byte_fallback, -1 when absent
};

}  // namespace ulysses::io
