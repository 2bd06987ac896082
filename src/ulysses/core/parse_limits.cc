#include "ulysses/core/parse_limits.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ulysses/core/error.h"

namespace ulysses {

void check_nesting_depth(std::string_view text, const std::string& origin, std::size_t max_depth,
                         bool yaml_quotes) {
  std::size_t depth = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"' || (yaml_quotes && c == '\'')) {
      for (++i; i < text.size() && text[i] != c; ++i)
        if (c == '"' && text[i] == '\\') ++i;  // skip the escaped character
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        UL_FAIL(origin, ": nesting deeper than ", max_depth, " levels of arrays/objects (at byte ",
                i, "); the file is corrupt or not what it claims to be");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

std::string read_text_file_capped(const std::filesystem::path& path, std::uintmax_t max_bytes,
                                  const std::string& what) {
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) UL_FAIL(what, ": cannot read: ", ec.message());
  if (size > max_bytes)
    UL_FAIL(what, ": ", size, " bytes is larger than the limit of ", max_bytes,
            " bytes for this kind of file: not the file it should be, or corrupt");
  std::ifstream in(path, std::ios::binary);
  if (!in) UL_FAIL(what, ": cannot open file: ", std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) UL_FAIL(what, ": read failed");
  return text.str();
}

std::string truncate_for_message(std::string_view value, std::size_t max_chars) {
  if (value.size() <= max_chars) return std::string(value);
  return std::string(value.substr(0, max_chars)) + "... (" + std::to_string(value.size()) +
         " bytes in all)";
}

}  // namespace ulysses
