#include "ulysses/train/config_file.h"

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <set>

#include "ulysses/core/error.h"
#include "ulysses/core/parse_limits.h"

namespace ulysses::train {

namespace {

// The file's text, within the size and nesting limits (before any library parses it).
std::string checked_text(const std::filesystem::path& path, bool yaml) {
  const std::string where = "--config " + path.string();
  const std::string text = read_text_file_capped(path, kMaxConfigFileBytes, where);
  check_nesting_depth(text, where, kMaxNestingDepth, yaml);
  return text;
}

std::vector<std::pair<std::string, std::string>> from_json(const std::filesystem::path& path) {
  const std::string text = checked_text(path, false);
  nlohmann::ordered_json j;  // keeps the file's key order
  std::set<std::string> seen;
  std::string duplicate;
  const auto find_duplicates = [&](int depth, nlohmann::ordered_json::parse_event_t event,
                                   nlohmann::ordered_json& parsed) {
    if (event == nlohmann::ordered_json::parse_event_t::key && depth == 1 &&
        !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    j = nlohmann::ordered_json::parse(text, find_duplicates);
  } catch (const nlohmann::json::exception& e) {
    UL_FAIL("--config ", path.string(), ": invalid JSON: ", e.what());
  }
  if (!j.is_object()) UL_FAIL("--config ", path.string(), ": the top level must be an object");
  if (!duplicate.empty())
    UL_FAIL("--config ", path.string(), ": key '", truncate_for_message(duplicate),
            "' appears more than once; keep one of them");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, value] : j.items()) {
    if (value.is_string())
      out.emplace_back(key, value.get<std::string>());
    else if (value.is_boolean() || value.is_number())
      out.emplace_back(key, value.dump());
    else if (value.is_null())
      continue;
    else
      UL_FAIL("--config ", path.string(), ": key '", key, "' must have a single value");
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> from_yaml(const std::filesystem::path& path) {
  const std::string text = checked_text(path, true);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    UL_FAIL("--config ", path.string(), ": invalid YAML at line ", e.mark.line + 1, ": ", e.msg);
  }
  if (root.IsNull()) return {};
  if (!root.IsMap()) UL_FAIL("--config ", path.string(), ": the top level must be a mapping");
  std::vector<std::pair<std::string, std::string>> out;
  std::set<std::string> seen;
  for (const auto& item : root) {
    if (!item.first.IsScalar())
      UL_FAIL("--config ", path.string(), ": keys must be plain names (line ",
              item.first.Mark().line + 1, ")");
    const auto key = item.first.as<std::string>();
    if (!seen.insert(key).second)
      UL_FAIL("--config ", path.string(), ": key '", truncate_for_message(key),
              "' appears more than once (line ", item.first.Mark().line + 1, "); keep one of them");
    if (item.second.IsNull()) continue;
    if (!item.second.IsScalar())
      UL_FAIL("--config ", path.string(), ": key '", truncate_for_message(key),
              "' must have a single value");
    out.emplace_back(key, item.second.as<std::string>());
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> read_config_file(
    const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path))
    UL_FAIL("--config ", path.string(), ": no such file");
  const auto ext = path.extension().string();
  if (ext == ".json") return from_json(path);
  if (ext == ".yaml" || ext == ".yml") return from_yaml(path);
  UL_FAIL("--config ", path.string(), ": unknown extension '", ext, "' (use .yaml, .yml or .json)");
}

}  // namespace ulysses::train
