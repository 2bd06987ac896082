// UTF-8 helpers and Unicode normalization for the tokenizer (io/tokenizer.h).
//
// Character classes follow Rust's `char` methods, which Hugging Face `tokenizers` uses:
// is_whitespace is the Unicode White_Space property, is_alphanumeric is Alphabetic or a number
// (Nd, Nl, No). Normalization forms come from ICU.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ulysses::io {

// Decodes the code point starting at s[i] and advances i past it. `s` must be valid UTF-8.
char32_t next_code_point(std::string_view s, std::size_t& i);

// Appends the UTF-8 encoding of `c` to `out`.
void append_utf8(char32_t c, std::string& out);

// Byte offset of the first invalid UTF-8 sequence in `s`, or npos when `s` is valid.
std::size_t find_invalid_utf8(std::string_view s);

// Replaces every invalid UTF-8 sequence by U+FFFD (as Rust's String::from_utf8_lossy).
std::string utf8_lossy(std::string_view bytes);

bool is_unicode_whitespace(char32_t c);
bool is_unicode_alphanumeric(char32_t c);

// The byte-level alphabet of GPT-2 (`bytes_to_unicode`): every byte maps to one printable
// code point; printable Latin-1 bytes map to themselves, the others to U+0100 onwards.
class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet();
  // Appends the UTF-8 of each byte's code point.
  void encode(std::string_view bytes, std::string& out) const;
  // The byte of code point `c`, or -1 when `c` is not in the alphabet.
  int byte_of(char32_t c) const;

 private:
  char32_t to_char_[256];
  std::string to_utf8_[256];
};

enum class NormalForm { nfc, nfd, nfkc, nfkd };

// Unicode normalization of UTF-8 text (ICU). Throws Error when ICU fails.
std::string normalize_unicode(std::string_view text, NormalForm form);

}  // namespace ulysses::io
