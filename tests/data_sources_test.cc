#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "test_util.h"
#include "ulysses/core/error.h"
#include "ulysses/data/packer.h"
#include "ulysses/data/source.h"

namespace ulysses::data {
namespace {

namespace fs = std::filesystem;

fs::path temp(const std::string& name) {
  const auto p = fs::temp_directory_path() / ("ulysses_data_" + name);
  fs::remove_all(p);
  return p;
}

TEST(Jsonl, ReadsInputIdsAndUnshiftedLabels) {
  const auto path = temp("a.jsonl");
  std::ofstream(path) << R"({"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]})"
                         "\n"
                      << "\n"
                      << R"({"input_ids": [9, 10]})"
                         "\n";
  auto source = make_jsonl_source(path.string(), 16);
  ASSERT_EQ(source->size(), 2);
  EXPECT_EQ(source->get(0).labels, (std::vector<std::int32_t>{-100, -100, 7, 8}));
  EXPECT_TRUE(source->get(1).labels.empty());
  // Shifted: the prompt's targets are ignored, the completion's kept.
  PackedSequence s;
  append_document(s, source->get(0));
  EXPECT_EQ(s.shift_labels, (std::vector<std::int32_t>{-100, 7, 8, -100}));
}

TEST(Jsonl, ErrorsNameFileAndLine) {
  const auto path = temp("b.jsonl");
  std::ofstream(path) << R"({"input_ids": [1, 2]})"
                         "\n"
                      << R"({"input_ids": [1, 2)"
                         "\n";
  EXPECT_NE(testing::error_message([&] {
              make_jsonl_source(path.string(), 16);
            }).find(path.string() + ":2"),
            std::string::npos);
  std::ofstream(path) << R"({"tokens": [1, 2]})"
                         "\n";
  EXPECT_NE(testing::error_message([&] { make_jsonl_source(path.string(), 16); }).find("input_ids"),
            std::string::npos);
  std::ofstream(path) << R"({"input_ids": [1, 2], "labels": [1]})"
                         "\n";
  EXPECT_NE(testing::error_message([&] { make_jsonl_source(path.string(), 16); }).find("labels"),
            std::string::npos);
  std::ofstream(path) << R"({"input_ids": [1, 20]})"
                         "\n";
  const auto vocab = testing::error_message([&] { make_jsonl_source(path.string(), 16); });
  EXPECT_NE(vocab.find("token id 20"), std::string::npos) << vocab;
  EXPECT_NE(vocab.find("vocab_size 16"), std::string::npos) << vocab;
}

void write_token_files(const fs::path& dir, const std::vector<std::uint32_t>& tokens,
                       const std::vector<std::uint64_t>& offsets,
                       const std::vector<std::uint8_t>* mask = nullptr) {
  fs::create_directories(dir);
  std::ofstream(dir / "tokens.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(tokens.data()),
             static_cast<std::streamsize>(tokens.size() * 4));
  std::ofstream(dir / "offsets.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(offsets.data()),
             static_cast<std::streamsize>(offsets.size() * 8));
  if (mask)
    std::ofstream(dir / "loss_mask.bin", std::ios::binary)
        .write(reinterpret_cast<const char*>(mask->data()),
               static_cast<std::streamsize>(mask->size()));
}

TEST(TokenFiles, ReadsDocumentsAndLossMask) {
  const auto dir = temp("tok");
  const std::vector<std::uint8_t> mask = {0, 1, 1, 1, 0, 1};
  write_token_files(dir, {3, 4, 5, 6, 7, 8}, {0, 4, 6}, &mask);
  auto source = make_token_file_source(dir.string(), 10);
  ASSERT_EQ(source->size(), 2);
  EXPECT_EQ(source->get(0).tokens, (std::vector<std::int32_t>{3, 4, 5, 6}));
  EXPECT_EQ(source->get(0).labels, (std::vector<std::int32_t>{-100, 4, 5, 6}));
  EXPECT_EQ(source->get(1).labels, (std::vector<std::int32_t>{-100, 8}));
}

TEST(TokenFiles, RejectsInconsistentFiles) {
  const auto dir = temp("bad");
  write_token_files(dir, {3, 4, 5}, {0, 2, 4});
  EXPECT_NE(
      testing::error_message([&] { make_token_file_source(dir.string(), 10); }).find("offsets.bin"),
      std::string::npos);
  write_token_files(dir, {3, 4, 5}, {0, 2, 1});
  EXPECT_NE(
      testing::error_message([&] { make_token_file_source(dir.string(), 10); }).find("decrease"),
      std::string::npos);
  write_token_files(dir, {3, 40, 5}, {0, 3});
  EXPECT_NE(
      testing::error_message([&] { make_token_file_source(dir.string(), 10); }).find("token id 40"),
      std::string::npos);
  const std::vector<std::uint8_t> short_mask = {1};
  write_token_files(dir, {3, 4, 5}, {0, 3}, &short_mask);
  EXPECT_NE(testing::error_message([&] {
              make_token_file_source(dir.string(), 10);
            }).find("loss_mask.bin"),
            std::string::npos);
}

TEST(Epochs, EveryEpochIsAPermutationDrawnFromTheSeed) {
  const auto path = temp("c.jsonl");
  {
    std::ofstream out(path);
    for (int i = 0; i < 7; ++i) out << R"({"input_ids": [)" << i + 1 << "]}\n";
  }
  auto shuffled = make_epoch_shuffled(make_jsonl_source(path.string(), 16), 9);
  EXPECT_EQ(shuffled->size(), -1);
  std::vector<std::int32_t> first, second;
  for (int i = 0; i < 7; ++i) first.push_back(shuffled->get(i).tokens[0]);
  for (int i = 7; i < 14; ++i) second.push_back(shuffled->get(i).tokens[0]);
  EXPECT_EQ(std::set<std::int32_t>(first.begin(), first.end()).size(), 7u);
  EXPECT_EQ(std::set<std::int32_t>(second.begin(), second.end()).size(), 7u);
  EXPECT_NE(first, second);
  EXPECT_EQ(shuffled->get(3).tokens, shuffled->get(3).tokens);
  auto again = make_epoch_shuffled(make_jsonl_source(path.string(), 16), 9);
  EXPECT_EQ(again->get(12).tokens, shuffled->get(12).tokens);  // any order of access
}

TEST(OpenData, NamesTheProblem) {
  DataOptions options;
  options.data = "/nonexistent/x.jsonl";
  options.vocab_size = 16;
  EXPECT_NE(testing::error_message([&] { open_data(options); }).find("docs/formats.md"),
            std::string::npos);
}

}  // namespace
}  // namespace ulysses::data
