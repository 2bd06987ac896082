#include "ulysses/io/tokenizer.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>

#include "ulysses/core/error.h"

namespace ulysses::io {

namespace {

constexpr std::size_t kMaxCachedWords = 100000;
constexpr std::size_t kMaxCachedWordBytes = 256;

// Rust regex's \w (tokenizers checks single_word tokens with it): alphanumerics, marks,
// connector punctuation and the joiners.
bool is_word_char(char32_t c) {
  if (is_unicode_alphanumeric(c) || c == 0x200C || c == 0x200D) return true;
  const auto type = u_charType(static_cast<UChar32>(c));
  return type == U_NON_SPACING_MARK || type == U_ENCLOSING_MARK ||
         type == U_COMBINING_SPACING_MARK || type == U_CONNECTOR_PUNCTUATION;
}

bool ends_with_word_char(std::string_view s) {
  if (s.empty()) return false;
  std::size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return is_word_char(next_code_point(s, i));
}

bool starts_with_word_char(std::string_view s) {
  if (s.empty()) return false;
  std::size_t i = 0;
  return is_word_char(next_code_point(s, i));
}

// Ids of a post-processor's special-token name: TemplateProcessing's special_tokens map.
std::vector<TokenId> template_ids(const nlohmann::json& p, const std::string& name,
                                  const std::string& where) {
  const auto& specials = p.value("special_tokens", nlohmann::json::object());
  if (!specials.contains(name))
    UL_FAIL(where, ": post_processor TemplateProcessing uses \"", name,
            "\" but special_tokens does not define it");
  return specials.at(name).at("ids").get<std::vector<TokenId>>();
}

}  // namespace

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  const auto file = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
  std::ifstream in(file);
  if (!in)
    UL_FAIL(file.string(),
            ": cannot open (a Hugging Face tokenizer.json, or a model directory "
            "holding one, is needed)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    UL_FAIL(file.string(), ": not valid JSON: ", e.what());
  }
  return Tokenizer(j, file.string());
}

Tokenizer::Tokenizer(const nlohmann::json& j, const std::string& where) : where_(where) {
  try {
    if (!j.is_object() || !j.contains("model"))
      UL_FAIL(where, ": not a tokenizer.json (no \"model\" key)");
    model_ = std::make_unique<BpeModel>(j.at("model"), where);
    read_normalizer(j.value("normalizer", nlohmann::json()), where);
    pre_tokenizer_ =
        std::make_unique<PreTokenizer>(j.value("pre_tokenizer", nlohmann::json()), where);
    read_post_processor(j.value("post_processor", nlohmann::json()), where);
    const auto& decoder = j.value("decoder", nlohmann::json());
    byte_level_decoder_ = !decoder.is_null() && decoder.value("type", "") == "ByteLevel";
    for (const auto& t : j.value("added_tokens", nlohmann::json::array())) {
      AddedToken a;
      a.id = t.at("id").get<TokenId>();
      a.content = t.at("content").get<std::string>();
      a.single_word = t.value("single_word", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.special = t.value("special", false);
      a.normalized = t.value("normalized", !a.special);
      if (a.content.empty()) UL_FAIL(where, ": added token ", a.id, " has empty content");
      a.matched = a.normalized ? normalize(a.content) : a.content;
      (a.normalized ? first_byte_norm_
                    : first_byte_raw_)[static_cast<unsigned char>(a.matched[0])] = true;
      added_by_content_[a.content] = a.id;
      added_by_id_[a.id] = added_.size();
      added_.push_back(std::move(a));
    }
  } catch (const nlohmann::json::exception& e) {
    UL_FAIL(where, ": unexpected tokenizer.json content: ", e.what());
  }
}

void Tokenizer::read_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return;
  const std::string type = j.value("type", std::string());
  if (type == "Sequence") {
    for (const auto& child : j.at("normalizers")) read_normalizer(child, where);
  } else if (type == "NFC") {
    normal_forms_.push_back(NormalForm::nfc);
  } else if (type == "NFD") {
    normal_forms_.push_back(NormalForm::nfd);
  } else if (type == "NFKC") {
    normal_forms_.push_back(NormalForm::nfkc);
  } else if (type == "NFKD") {
    normal_forms_.push_back(NormalForm::nfkd);
  } else {
    UL_FAIL(where, ": normalizer type \"", type,
            "\" is not supported (NFC, NFD, NFKC, NFKD, Sequence)");
  }
}

void Tokenizer::read_post_processor(const nlohmann::json& p, const std::string& where) {
  if (p.is_null()) return;
  const std::string type = p.value("type", std::string());
  if (type == "Sequence") {
    for (const auto& child : p.at("processors")) read_post_processor(child, where);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets; ids are unchanged.
  } else if (type == "TemplateProcessing") {
    std::vector<TokenId> before, after;
    int sequences = 0;
    for (const auto& item : p.at("single")) {
      if (item.contains("Sequence")) {
        if (item.at("Sequence").at("id").get<std::string>() != "A")
          UL_FAIL(where, ": post_processor TemplateProcessing single uses sequence B");
        ++sequences;
      } else if (item.contains("SpecialToken")) {
        const auto ids =
            template_ids(p, item.at("SpecialToken").at("id").get<std::string>(), where);
        auto& side = sequences == 0 ? before : after;
        side.insert(side.end(), ids.begin(), ids.end());
      }
    }
    if (sequences != 1)
      UL_FAIL(where, ": post_processor TemplateProcessing single must use $A exactly once");
    prefix_ids_.insert(prefix_ids_.begin(), before.begin(), before.end());
    suffix_ids_.insert(suffix_ids_.end(), after.begin(), after.end());
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix_ids_.insert(prefix_ids_.begin(), p.at("cls").at(1).get<TokenId>());
    suffix_ids_.push_back(p.at("sep").at(1).get<TokenId>());
  } else {
    UL_FAIL(where, ": post_processor type \"", type,
            "\" is not supported (TemplateProcessing, ByteLevel, RobertaProcessing, "
            "BertProcessing, Sequence)");
  }
}

std::string Tokenizer::normalize(std::string_view text) const {
  std::string s(text);
  for (NormalForm form : normal_forms_) s = normalize_unicode(s, form);
  return s;
}

// Leftmost-longest matching of the added tokens of one kind (raw or normalized), then the
// single_word / lstrip / rstrip rules of tokenizers' AddedVocabulary.
void Tokenizer::split_added(std::string_view text, bool normalized_tokens,
                            std::vector<Segment>& out) const {
  const bool* first_byte = normalized_tokens ? first_byte_norm_ : first_byte_raw_;
  std::size_t last = 0;  // end of the previous match
  std::size_t pos = 0;   // where the search goes on
  while (pos < text.size()) {
    if (!first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const AddedToken* best = nullptr;
    for (const AddedToken& a : added_) {
      if (a.normalized != normalized_tokens) continue;
      if ((best == nullptr || a.matched.size() > best->matched.size()) &&
          text.substr(pos, a.matched.size()) == a.matched)
        best = &a;
    }
    if (best == nullptr) {
      ++pos;
      continue;
    }
    std::size_t start = pos, stop = pos + best->matched.size();
    pos = stop;
    if (best->single_word &&
        (ends_with_word_char(text.substr(0, start)) || starts_with_word_char(text.substr(stop))))
      continue;
    if (best->lstrip) {
      std::size_t s = start;
      while (s > last) {
        std::size_t k = s - 1;
        while (k > 0 && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
        std::size_t probe = k;
        if (!is_unicode_whitespace(next_code_point(text, probe))) break;
        s = k;
      }
      start = s;
    }
    if (best->rstrip) {
      while (stop < text.size()) {
        std::size_t probe = stop;
        if (!is_unicode_whitespace(next_code_point(text, probe))) break;
        stop = probe;
      }
    }
    if (start > last) out.push_back({std::string(text.substr(last, start - last)), -1});
    out.push_back({std::string(text.substr(start, stop - start)), best->id});
    last = stop;
  }
  if (last < text.size()) out.push_back({std::string(text.substr(last)), -1});
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special_tokens,
                                       WordCache* cache) const {
  const std::size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos) UL_FAIL("tokenizer: text is not valid UTF-8 (byte ", bad, ")");
  std::vector<Segment> raw, segments;
  split_added(text, false, raw);
  for (Segment& seg : raw) {
    if (seg.id >= 0) {
      segments.push_back(std::move(seg));
      continue;
    }
    split_added(normalize(seg.text), true, segments);
  }
  std::vector<TokenId> ids;
  if (add_special_tokens) ids = prefix_ids_;
  std::vector<std::string> words;
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    words.clear();
    pre_tokenizer_->split(seg.text, words);
    for (const std::string& w : words) {
      if (cache == nullptr || w.size() > kMaxCachedWordBytes) {
        model_->tokenize(w, ids);
        continue;
      }
      const auto it = cache->find(w);
      if (it != cache->end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        continue;
      }
      const std::size_t first = ids.size();
      model_->tokenize(w, ids);
      if (cache->size() >= kMaxCachedWords) cache->clear();
      cache->emplace(
          w, std::vector<TokenId>(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end()));
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::vector<std::vector<TokenId>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          bool add_special_tokens,
                                                          int num_threads) const {
  std::vector<std::vector<TokenId>> out(texts.size());
  int threads = num_threads > 0
                    ? num_threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads =
      static_cast<int>(std::min<std::size_t>(threads, std::max<std::size_t>(1, texts.size())));
  constexpr std::size_t kChunk = 64;
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto work = [&](std::exception_ptr& my_error) {
    WordCache cache;
    try {
      for (std::size_t begin = next.fetch_add(kChunk); begin < texts.size() && !failed;
           begin = next.fetch_add(kChunk))
        for (std::size_t i = begin; i < std::min(texts.size(), begin + kChunk); ++i)
          out[i] = encode(texts[i], add_special_tokens, &cache);
    } catch (...) {
      my_error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::exception_ptr> errors(threads);
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, std::ref(errors[t]));
  work(errors[0]);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const {
  std::string bytes;
  bool first = true;
  for (TokenId id : ids) {
    const std::string* token = nullptr;
    const auto added = added_by_id_.find(id);
    if (added != added_by_id_.end()) {
      if (skip_special_tokens && added_[added->second].special) continue;
      token = &added_[added->second].content;
    } else {
      token = model_->id_to_token(id);
    }
    if (token == nullptr) UL_FAIL(where_, ": decode: id ", id, " is not in the vocabulary");
    if (!byte_level_decoder_) {  // no decoder: tokens joined by spaces
      if (!first) bytes.push_back(' ');
      bytes += *token;
      first = false;
      continue;
    }
    std::string mapped;
    bool all = true;
    for (std::size_t i = 0; i < token->size() && all;) {
      const int b = alphabet_.byte_of(next_code_point(*token, i));
      if (b < 0)
        all = false;
      else
        mapped.push_back(static_cast<char>(b));
    }
    bytes += all ? mapped : *token;
  }
  return utf8_lossy(bytes);
}

TokenId Tokenizer::token_to_id(std::string_view token) const {
  const auto it = added_by_content_.find(std::string(token));
  return it != added_by_content_.end() ? it->second : model_->token_to_id(token);
}

std::size_t Tokenizer::vocab_size() const {
  std::size_t n = model_->vocab_size();
  for (const AddedToken& a : added_) n = std::max(n, static_cast<std::size_t>(a.id) + 1);
  return n;
}

}  // namespace ulysses::io
