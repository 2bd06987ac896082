// Shared by the libFuzzer harnesses: the input goes to a file of this process (the parsers
// under test read files, as the trainer does), and only ulysses::Error may escape a parser.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace ulysses::fuzz {

// <tmp>/ulysses_fuzz_<pid>/<name>, written with `size` bytes of `data`.
inline std::filesystem::path write_input(const std::string& name, const std::uint8_t* data,
                                         std::size_t size) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("ulysses_fuzz_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace ulysses::fuzz
