// Limits on what the parsers read (config.json, safetensors headers, trainer_state.json, JSON
// Lines data, --config files), checked before a library parses (and may recurse on) the text,
// and one way to quote a value of unknown size in an error message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace ulysses {

// Deepest nesting of arrays/objects accepted in any JSON or YAML file we read. Real files nest
// a handful of levels; the JSON library recurses once per level (and crashes on ~70k levels).
inline constexpr std::size_t kMaxNestingDepth = 128;
// Size caps of small text files (config.json, trainer_state.json, --config files, indexes).
inline constexpr std::uintmax_t kMaxConfigFileBytes = std::uintmax_t{64} << 20;

// Throws Error "<origin>: JSON nesting deeper than <max_depth> levels ..." when arrays and
// objects ('[' and '{' outside strings) nest deeper than max_depth in `text`. JSON strings
// (double quotes, backslash escapes) are skipped; with yaml_quotes, single-quoted YAML strings
// as well. Linear time, no recursion.
void check_nesting_depth(std::string_view text, const std::string& origin,
                         std::size_t max_depth = kMaxNestingDepth, bool yaml_quotes = false);

// Reads a whole file (Error naming it when it cannot be read or is larger than max_bytes).
std::string read_text_file_capped(const std::filesystem::path& path, std::uintmax_t max_bytes,
                                  const std::string& what);

// `value` for an error message: as is up to max_chars, else its first max_chars characters and
// "... (<n> bytes in all)". Every message that echoes a value read from a file uses this.
std::string truncate_for_message(std::string_view value, std::size_t max_chars = 120);

}  // namespace ulysses
