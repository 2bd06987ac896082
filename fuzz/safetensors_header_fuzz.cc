// libFuzzer: a safetensors file (length, JSON header, data) opened and every tensor read.
#include "fuzz_util.h"
#include "ulysses/core/error.h"
#include "ulysses/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = ulysses::fuzz::write_input("model.safetensors", data, size);
  try {
    ulysses::io::SafetensorsReader reader(path);
    for (const auto& name : reader.names()) reader.read(name);
  } catch (const ulysses::Error&) {
  }
  return 0;
}
