// libFuzzer: a Hugging Face config.json parsed into a ModelConfig.
#include "fuzz_util.h"
#include "ulysses/core/error.h"
#include "ulysses/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = ulysses::fuzz::write_input("config.json", data, size);
  try {
    ulysses::model::load_model_config(path);
  } catch (const ulysses::Error&) {
  }
  return 0;
}
