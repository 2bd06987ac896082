// The C++ tokenizer against Hugging Face `tokenizers`: tests/data/tokenizer/<kind>/golden.json
// holds, for every text of a multilingual corpus, the ids `tokenizers` gives with and without
// special tokens and its decode (scripts/make_tokenizer_golden.py writes them).
#include "ulysses/io/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "ulysses/core/error.h"

namespace ulysses::io {
namespace {

const std::filesystem::path kData = std::filesystem::path(ULYSSES_TEST_DATA) / "tokenizer";

nlohmann::json read_golden(const std::string& kind) {
  std::ifstream in(kData / kind / "golden.json");
  EXPECT_TRUE(in) << kind;
  return nlohmann::json::parse(in);
}

class TokenizerGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerGolden, EncodeEqualsTokenizers) {
  const Tokenizer tok = Tokenizer::load(kData / GetParam());
  const auto golden = read_golden(GetParam());
  ASSERT_GT(golden.at("cases").size(), 100u);
  for (const auto& c : golden.at("cases")) {
    const auto text = c.at("text").get<std::string>();
    EXPECT_EQ(tok.encode(text, true), c.at("ids").get<std::vector<TokenId>>()) << "text: " << text;
    EXPECT_EQ(tok.encode(text, false), c.at("plain_ids").get<std::vector<TokenId>>())
        << "text: " << text;
  }
}

TEST_P(TokenizerGolden, DecodeEqualsTokenizers) {
  const Tokenizer tok = Tokenizer::load(kData / GetParam());
  const auto golden = read_golden(GetParam());  // named: a temporary would dangle in the loop
  ASSERT_GT(golden.at("cases").size(), 100u);
  for (const auto& c : golden.at("cases")) {
    EXPECT_EQ(tok.decode(c.at("ids").get<std::vector<TokenId>>()),
              c.at("decoded").get<std::string>())
        << "text: " << c.at("text").get<std::string>();
  }
}

TEST_P(TokenizerGolden, BatchEqualsSingleInOrderForAnyThreadCount) {
  const Tokenizer tok = Tokenizer::load(kData / GetParam());
  std::vector<std::string> texts;
  std::vector<std::vector<TokenId>> expected;
  const auto golden = read_golden(GetParam());
  for (int rep = 0; rep < 3; ++rep)
    for (const auto& c : golden.at("cases")) {
      texts.push_back(c.at("text").get<std::string>());
      expected.push_back(c.at("ids").get<std::vector<TokenId>>());
    }
  ASSERT_GT(texts.size(), 300u);
  for (int threads : {1, 2, 3, 7}) EXPECT_EQ(tok.encode_batch(texts, true, threads), expected);
}

INSTANTIATE_TEST_SUITE_P(Kinds, TokenizerGolden, ::testing::Values("llama3", "qwen2", "gpt2"));

TEST(Tokenizer, PostProcessorIdsAndLookup) {
  const Tokenizer llama = Tokenizer::load(kData / "llama3" / "tokenizer.json");
  EXPECT_EQ(llama.prefix_ids(), std::vector<TokenId>{llama.token_to_id("<|begin_of_text|>")});
  EXPECT_TRUE(llama.suffix_ids().empty());
  const Tokenizer gpt2 = Tokenizer::load(kData / "gpt2");
  EXPECT_EQ(gpt2.suffix_ids(), std::vector<TokenId>{gpt2.token_to_id("</s>")});
  EXPECT_EQ(gpt2.token_to_id("no such token"), -1);
  EXPECT_GE(gpt2.vocab_size(), 900u);
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  const Tokenizer tok = Tokenizer::load(kData / "qwen2");
  EXPECT_THROW(tok.encode("ok \xff bad"), Error);
  EXPECT_THROW(tok.encode("\xed\xa0\x80"), Error);  // a surrogate
  std::vector<std::string> batch(200, "fine");
  batch[150] = "\xc3";
  EXPECT_THROW(tok.encode_batch(batch, true, 2), Error);
}

TEST(Tokenizer, BadFilesNameTheFileAndKey) {
  const auto dir = std::filesystem::temp_directory_path() / "ulysses_tokenizer_test";
  std::filesystem::create_directories(dir);
  auto expect_error = [&](const std::string& content, const std::string& needle) {
    std::ofstream(dir / "tokenizer.json") << content;
    try {
      Tokenizer::load(dir);
      ADD_FAILURE() << "no error for " << content;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
    }
  };
  expect_error("{not json", "not valid JSON");
  expect_error(R"({"model": {"type": "Unigram", "vocab": []}})", "Unigram");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b"]]}})",
               "not in the vocabulary");
  expect_error(R"({"model": {"type": "BPE", "vocab": {}}, "normalizer": {"type": "Lowercase"}})",
               "Lowercase");
  expect_error(R"({"model": {"type": "BPE", "vocab": {}}, "pre_tokenizer": {"type": "Split",
                "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": false}})",
               "does not compile");
  std::filesystem::remove_all(dir);
  EXPECT_THROW(Tokenizer::load(dir), Error);
}

}  // namespace
}  // namespace ulysses::io
