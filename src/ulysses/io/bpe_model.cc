#include "ulysses/io/bpe_model.h"

#include <cstdio>
#include <limits>

#include "ulysses/core/error.h"
#include "ulysses/io/unicode_text.h"

namespace ulysses::io {

namespace {

bool is_null_or(const nlohmann::json& j, const char* key) {
  return !j.contains(key) || j.at(key).is_null();
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model, const std::string& where) {
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE")
    UL_FAIL(where, ": model type \"", type,
            "\" is not supported (only BPE tokenizers: Llama-3, Qwen2/3, GPT-2 style)");
  if (!is_null_or(model, "dropout") && model.at("dropout").get<double>() != 0.0)
    UL_FAIL(where, ": BPE dropout is not supported (it makes encoding random)");
  if (!is_null_or(model, "continuing_subword_prefix") || !is_null_or(model, "end_of_word_suffix"))
    UL_FAIL(where, ": BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  if (!model.contains("vocab") || !model.at("vocab").is_object())
    UL_FAIL(where, ": model.vocab is missing or not an object");
  fuse_unk_ = model.value("fuse_unk", false);
  byte_fallback_ = model.value("byte_fallback", false);
  ignore_merges_ = model.value("ignore_merges", false);

  for (const auto& [token, id_json] : model.at("vocab").items()) {
    const auto id = id_json.get<TokenId>();
    if (id < 0) UL_FAIL(where, ": vocab id ", id, " of \"", token, "\" is negative");
    vocab_.emplace(token, id);
    if (static_cast<std::size_t>(id) >= id_to_token_.size()) {
      id_to_token_.resize(id + 1);
      has_id_.resize(id + 1, false);
    }
    id_to_token_[id] = token;
    has_id_[id] = true;
  }
  if (!is_null_or(model, "unk_token")) {
    const auto unk = model.at("unk_token").get<std::string>();
    unk_id_ = token_to_id(unk);
    if (unk_id_ < 0) UL_FAIL(where, ": unk_token \"", unk, "\" is not in the vocabulary");
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = token_to_id(name);
  }

  const auto& merges = model.value("merges", nlohmann::json::array());
  std::int32_t rank = 0;
  for (const auto& m : merges) {
    std::string left, right;
    if (m.is_string()) {  // "a b" (tokenizers < 0.20)
      const auto s = m.get<std::string>();
      const auto space = s.find(' ', 1);
      if (space == std::string::npos) UL_FAIL(where, ": merge \"", s, "\" has no space");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2) {  // ["a", "b"]
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      UL_FAIL(where, ": merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    const TokenId a = token_to_id(left), b = token_to_id(right);
    const TokenId merged = token_to_id(left + right);
    if (a < 0 || b < 0 || merged < 0)
      UL_FAIL(where, ": merge ", rank, " (\"", left, "\", \"", right,
              "\") uses a token that is not in the vocabulary");
    merges_.try_emplace(pair_key(a, b), Merge{rank, merged});
    ++rank;
  }
}

TokenId BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(TokenId id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::initial_symbols(std::string_view word, std::vector<TokenId>& symbols) const {
  bool last_was_unk = false;
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t start = i;
    next_code_point(word, i);
    const std::string_view ch = word.substr(start, i - start);
    const TokenId id = token_to_id(ch);
    if (id >= 0) {
      symbols.push_back(id);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char b : ch) all = all && byte_ids_[static_cast<unsigned char>(b)] >= 0;
      if (all) {
        for (char b : ch) symbols.push_back(byte_ids_[static_cast<unsigned char>(b)]);
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id_ >= 0) {  // without an unk token, unknown characters are dropped (as HF does)
      if (!(fuse_unk_ && last_was_unk)) symbols.push_back(unk_id_);
      last_was_unk = true;
    }
  }
}

void BpeModel::tokenize(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const TokenId whole = token_to_id(word);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  std::vector<TokenId> symbols;
  initial_symbols(word, symbols);
  // Repeatedly merge the pair of lowest rank (the leftmost one on ties), as tokenizers' Word.
  constexpr std::int32_t none = std::numeric_limits<std::int32_t>::max();
  std::vector<std::int32_t> ranks(symbols.size(), none);
  auto rank_at = [&](std::size_t i) {
    const auto it = merges_.find(pair_key(symbols[i], symbols[i + 1]));
    return it == merges_.end() ? none : it->second.rank;
  };
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i) ranks[i] = rank_at(i);
  while (symbols.size() > 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i + 1 < symbols.size(); ++i)
      if (ranks[i] < ranks[best]) best = i;
    if (ranks[best] == none) break;
    symbols[best] = merges_.at(pair_key(symbols[best], symbols[best + 1])).merged;
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    ranks.erase(ranks.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    if (best + 1 < symbols.size())
      ranks[best] = rank_at(best);
    else
      ranks[best] = none;
    if (best > 0) ranks[best - 1] = rank_at(best - 1);
  }
  out.insert(out.end(), symbols.begin(), symbols.end());
}

}  // namespace ulysses::io
