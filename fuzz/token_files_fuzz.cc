// libFuzzer: a token-file directory (tokens.bin, offsets.bin, loss_mask.bin). The input is cut
// in three at the two offsets given by its first two bytes.
#include <algorithm>

#include "fuzz_util.h"
#include "ulysses/core/error.h"
#include "ulysses/data/source.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t rest = size - 2;
  const std::size_t a = std::min<std::size_t>(rest, data[0] * 4u);
  const std::size_t b = std::min<std::size_t>(rest - a, data[1] * 8u);
  const std::uint8_t* body = data + 2;
  const auto dir = ulysses::fuzz::write_input("tokens.bin", body, a).parent_path();
  ulysses::fuzz::write_input("offsets.bin", body + a, b);
  std::filesystem::remove(dir / "loss_mask.bin");
  if (rest - a - b > 0) ulysses::fuzz::write_input("loss_mask.bin", body + a + b, rest - a - b);
  try {
    const auto source = ulysses::data::make_token_file_source(dir.string(), 64);
    for (std::int64_t i = 0; i < source->size(); ++i) source->get(i);
  } catch (const ulysses::Error&) {
  }
  return 0;
}
