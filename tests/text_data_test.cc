// Text JSON Lines through the tokenizer (data/text_data.h) and long-document handling
// (data/long_documents.h).
#include "ulysses/data/text_data.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ulysses/core/error.h"
#include "ulysses/data/long_documents.h"
#include "ulysses/data/source.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::data {
namespace {

namespace fs = std::filesystem;
const fs::path kTokenizers = fs::path(ULYSSES_TEST_DATA) / "tokenizer";

class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() / ("ulysses_text_data_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path file(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name) << content;
    return path_ / name;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(TextData, TextLinesEqualGoldenIdsAndPromptsAreMasked) {
  const auto tok = io::Tokenizer::load(kTokenizers / "gpt2");  // BOS and EOS
  std::ifstream in(kTokenizers / "gpt2" / "golden.json");
  const auto golden = nlohmann::json::parse(in).at("cases");
  TempDir tmp;
  std::string lines;
  for (const auto& c : golden) lines += nlohmann::json{{"text", c.at("text")}}.dump() + "\n";
  lines += "\n";  // blank lines are skipped
  lines += R"({"prompt": "Question?", "completion": " Answer."})"
           "\n";
  const auto docs = tokenize_jsonl_files({tmp.file("a.jsonl", lines).string()}, tok, 2);
  ASSERT_EQ(docs.size(), golden.size() + 1);
  for (std::size_t i = 0; i < golden.size(); ++i) {
    EXPECT_EQ(docs[i].tokens, golden[i].at("ids").get<std::vector<std::int32_t>>()) << i;
    EXPECT_TRUE(docs[i].labels.empty());
  }
  const Document& pc = docs.back();
  std::vector<std::int32_t> expected = tok.prefix_ids();
  const auto prompt = tok.encode("Question?", false), completion = tok.encode(" Answer.", false);
  expected.insert(expected.end(), prompt.begin(), prompt.end());
  const std::size_t masked = expected.size();
  expected.insert(expected.end(), completion.begin(), completion.end());
  expected.insert(expected.end(), tok.suffix_ids().begin(), tok.suffix_ids().end());
  EXPECT_EQ(pc.tokens, expected);
  ASSERT_EQ(pc.labels.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(pc.labels[i], i < masked ? ops::kIgnoreIndex : expected[i]) << i;
}

TEST(TextData, TokenFilesRoundTrip) {
  const auto tok = io::Tokenizer::load(kTokenizers / "qwen2");
  TempDir tmp;
  const auto input = tmp.file("b.jsonl", R"({"text": "hello world"})"
                                         "\n"
                                         R"({"text": ""})"
                                         "\n"
                                         R"({"prompt": "a", "completion": "b c"})"
                                         "\n");
  const auto docs = tokenize_jsonl_files({input.string()}, tok);
  const auto out = (tmp.path() / "toks").string();
  EXPECT_EQ(write_token_files(out, docs), 1);  // the empty text
  const auto source = make_token_file_source(out, static_cast<std::int64_t>(tok.vocab_size()));
  ASSERT_EQ(source->size(), 2);
  EXPECT_EQ(source->get(0).tokens, docs[0].tokens);
  EXPECT_EQ(source->get(1).tokens, docs[2].tokens);
  EXPECT_EQ(source->get(1).labels, docs[2].labels);
  EXPECT_THROW(write_token_files(out, docs), Error);  // exists
}

class VectorSource final : public DocumentSource {
 public:
  explicit VectorSource(std::vector<Document> docs) : docs_(std::move(docs)) {}
  std::string describe() const override { return "vector"; }
  std::int64_t size() const override { return static_cast<std::int64_t>(docs_.size()); }
  Document get(std::int64_t i) const override { return docs_.at(static_cast<std::size_t>(i)); }

 private:
  std::vector<Document> docs_;
};

Document iota_document(int n, bool labels) {
  Document d;
  for (int i = 0; i < n; ++i) d.tokens.push_back(100 + i);
  if (labels)
    for (int i = 0; i < n; ++i) d.labels.push_back(i < 3 ? ops::kIgnoreIndex : 100 + i);
  return d;
}

TEST(LongDocuments, SplitIntoConsecutivePieces) {
  auto source = make_long_document_source(
      std::make_unique<VectorSource>(std::vector<Document>{
          iota_document(3, false), iota_document(10, true), iota_document(4, false)}),
      4, LongDocuments::split);
  ASSERT_EQ(source->size(), 5);  // 3 | 4 4 2 | 4
  EXPECT_EQ(source->get(0).tokens, (std::vector<std::int32_t>{100, 101, 102}));
  EXPECT_EQ(source->get(1).tokens, (std::vector<std::int32_t>{100, 101, 102, 103}));
  EXPECT_EQ(source->get(1).labels, (std::vector<std::int32_t>{-100, -100, -100, 103}));
  EXPECT_EQ(source->get(2).tokens, (std::vector<std::int32_t>{104, 105, 106, 107}));
  EXPECT_EQ(source->get(3).tokens, (std::vector<std::int32_t>{108, 109}));
  EXPECT_EQ(source->get(3).labels, (std::vector<std::int32_t>{108, 109}));
  EXPECT_EQ(source->get(4).tokens.size(), 4u);
  EXPECT_NE(source->describe().find("1 documents longer than 4 tokens split"), std::string::npos)
      << source->describe();
}

TEST(LongDocuments, TruncateKeepsTheStartAndCountsDroppedTokens) {
  auto source = make_long_document_source(std::make_unique<VectorSource>(std::vector<Document>{
                                              iota_document(10, false), iota_document(2, false)}),
                                          4, LongDocuments::truncate);
  ASSERT_EQ(source->size(), 2);
  EXPECT_EQ(source->get(0).tokens, (std::vector<std::int32_t>{100, 101, 102, 103}));
  EXPECT_EQ(source->get(1).tokens.size(), 2u);
  EXPECT_NE(source->describe().find("truncated (6 tokens dropped)"), std::string::npos)
      << source->describe();
  EXPECT_THROW(parse_long_documents("cut"), Error);
}

}  // namespace
}  // namespace ulysses::data
