// libFuzzer: trainer_state.json read as a resume reads it (size and nesting limits, JSON parse,
// every field checked).
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "ulysses/core/error.h"
#include "ulysses/core/parse_limits.h"
#include "ulysses/train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    ulysses::check_nesting_depth(text, "trainer_state.json");
    const nlohmann::json json = nlohmann::json::parse(text);
    ulysses::train::training_state_from_json(json, "trainer_state.json");
  } catch (const ulysses::Error&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
