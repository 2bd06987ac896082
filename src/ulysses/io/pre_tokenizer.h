// Pre-tokenizers of a Hugging Face tokenizer.json: Split (regex or literal), ByteLevel and
// Sequence, cutting normalized text into the words the BPE model tokenizes one at a time.
// Regexes are compiled with PCRE2 in UTF and Unicode-property mode (\p{L}, \p{N}, \s as in the
// Oniguruma patterns `tokenizers` uses), JIT-compiled when the platform allows.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "ulysses/io/unicode_text.h"

namespace ulysses::io {

// One compiled regular expression; immutable, safe to use from several threads at once.
class Regex {
 public:
  // Throws Error naming `where` and the PCRE2 message when `pattern` does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Calls on_match(begin, end) for every non-overlapping match, left to right. `text` must be
  // valid UTF-8.
  template <typename F>
  void for_each_match(std::string_view text, F&& on_match) const;

 private:
  bool match(std::string_view text, std::size_t offset, void* match_data, std::size_t& begin,
             std::size_t& end) const;
  void* new_match_data() const;
  static void free_match_data(void* match_data);
  void* code_ = nullptr;  // pcre2_code_8*
};

class PreTokenizer {
 public:
  // Reads "pre_tokenizer" (null: the whole text is one word).
  PreTokenizer(const nlohmann::json& j, const std::string& where);
  ~PreTokenizer();
  // Appends the words of `text` to `words`.
  void split(std::string_view text, std::vector<std::string>& words) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
  ByteLevelAlphabet alphabet_;
};

template <typename F>
void Regex::for_each_match(std::string_view text, F&& on_match) const {
  void* md = new_match_data();
  std::size_t offset = 0, begin = 0, end = 0;
  while (offset <= text.size() && match(text, offset, md, begin, end)) {
    if (end > begin) on_match(begin, end);
    if (end > offset) {
      offset = end;
    } else {  // an empty match: step over one character
      offset = end + 1;
      while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80)
        ++offset;
    }
  }
  free_match_data(md);
}

}  // namespace ulysses::io
