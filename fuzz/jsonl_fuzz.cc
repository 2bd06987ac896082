// libFuzzer: a JSON Lines data file opened (every line validated) and every document read.
#include "fuzz_util.h"
#include "ulysses/core/error.h"
#include "ulysses/data/source.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = ulysses::fuzz::write_input("data.jsonl", data, size);
  try {
    const auto source = ulysses::data::make_jsonl_source(path.string(), 64);
    for (std::int64_t i = 0; i < source->size(); ++i) source->get(i);
  } catch (const ulysses::Error&) {
  }
  return 0;
}
