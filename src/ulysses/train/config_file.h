// --config FILE: a flat mapping of option names (snake_case, as Accelerate / Trainer users
// write them) to scalar values, in YAML (.yaml, .yml) or JSON (.json).
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace ulysses::train {

// Key/value pairs in file order; booleans come back as "true"/"false". Errors name the file
// (and line or key): missing file, syntax errors, a top level that is not a mapping, a value
// that is not a scalar, an unsupported extension.
std::vector<std::pair<std::string, std::string>> read_config_file(
    const std::filesystem::path& path);

}  // namespace ulysses::train
