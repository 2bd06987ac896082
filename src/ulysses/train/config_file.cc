#include "ulysses/train/config_file.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "ulysses/core/error.h"

namespace ulysses::train {

namespace {

std::vector<std::pair<std::string, std::string>> from_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  nlohmann::ordered_json j;  // keeps the file's key order
  try {
    j = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    UL_FAIL("--config ", path.string(), ": invalid JSON: ", e.what());
  }
  if (!j.is_object()) UL_FAIL("--config ", path.string(), ": the top level must be an object");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, value] : j.items()) {
    if (value.is_string()) out.emplace_back(key, value.get<std::string>());
    else if (value.is_boolean() || value.is_number()) out.emplace_back(key, value.dump());
    else if (value.is_null()) continue;
    else UL_FAIL("--config ", path.string(), ": key '", key, "' must have a single value");
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> from_yaml(const std::filesystem::path& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::Exception& e) {
    UL_FAIL("--config ", path.string(), ": invalid YAML at line ", e.mark.line + 1, ": ", e.msg);
  }
  if (root.IsNull()) return {};
  if (!root.IsMap()) UL_FAIL("--config ", path.string(), ": the top level must be a mapping");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : root) {
    const auto key = item.first.as<std::string>();
    if (item.second.IsNull()) continue;
    if (!item.second.IsScalar())
      UL_FAIL("--config ", path.string(), ": key '", key, "' must have a single value");
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
  UL_FAIL("--config ", path.string(), ": unknown extension '", ext,
          "' (use .yaml, .yml or .json)");
}

}  // namespace ulysses::train
