// The tokenization cache of text JSON Lines (data/token_cache.h): a cached read equals fresh
// tokenization, a second open reads the cache, a changed input or tokenizer or a damaged entry
// is not trusted, "none" writes nothing, an unwritable directory is not an error.
#include "ulysses/data/token_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "ulysses/data/source.h"
#include "ulysses/data/text_data.h"

namespace ulysses::data {
namespace {

namespace fs = std::filesystem;
const fs::path kTokenizers = fs::path(ULYSSES_TEST_DATA) / "tokenizer";
constexpr std::int64_t kVocab = 1 << 20;

class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() / ("ulysses_token_cache_" + std::to_string(::getpid()))) {
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

const char* const kMixed =
    R"({"text": "The quick brown fox jumps over the lazy dog. 中文 😀 12345"})"
    "\n\n"
    R"({"prompt": "Question: 2+2?", "completion": " Answer: 4"})"
    "\n"
    R"({"text": "   whitespace   runs\n\n and <|begin_of_text|> special"})"
    "\n";
const char* const kPromptFirst = R"({"prompt": "Q?", "completion": " A."})"
                                 "\n"
                                 R"({"prompt": "Say hi", "completion": " hi"})"
                                 "\n";

std::vector<Document> all(const DocumentSource& s) {
  std::vector<Document> out;
  for (std::int64_t i = 0; i < s.size(); ++i) out.push_back(s.get(i));
  return out;
}

void expect_same(const std::vector<Document>& a, const std::vector<Document>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens) << i;
    EXPECT_EQ(a[i].labels, b[i].labels) << i;
  }
}

bool from_cache(const DocumentSource& s) {
  return s.describe().find("from the tokenized cache") != std::string::npos;
}

// Entries (not temporaries) in a cache directory.
std::vector<fs::path> entries(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  return out;
}

TEST(TokenCache, SecondOpenReadsTheCacheAndEqualsFreshTokenization) {
  TempDir tmp;
  const fs::path tok = kTokenizers / "llama3";
  const fs::path cache = tmp.path() / "cache";
  for (const char* content : {kMixed, kPromptFirst}) {
    const auto data = tmp.file(content == kMixed ? "mixed.jsonl" : "prompt.jsonl", content);
    const auto fresh = make_text_jsonl_source(data, tok, kVocab);  // no cache
    const auto first = make_text_jsonl_source(data, tok, kVocab, cache.string());
    EXPECT_FALSE(from_cache(*first));
    const auto key = token_cache_key(data, tok);
    const fs::path entry = token_cache_entry(cache.string(), key);
    ASSERT_TRUE(fs::exists(entry / "manifest.json"));
    std::ifstream in(entry / "manifest.json");
    const auto manifest = nlohmann::json::parse(in);
    EXPECT_EQ(manifest.at("key"), key.to_json());
    EXPECT_EQ(manifest.at("documents").get<std::int64_t>(), fresh->size());
    EXPECT_EQ(key.mode, content == kMixed ? "text" : "prompt_completion");
    EXPECT_TRUE(fs::exists(entry / "loss_mask.bin"));  // both files have a prompt/completion
    const auto second = make_text_jsonl_source(data, tok, kVocab, cache.string());
    EXPECT_TRUE(from_cache(*second)) << second->describe();
    expect_same(all(*second), all(*fresh));
    expect_same(all(*first), all(*fresh));
    const auto docs = all(*second);  // masked prompts survive the cache; text has no labels
    EXPECT_TRUE(docs[content == kMixed ? 0 : 1].labels.empty() == (content == kMixed));
    EXPECT_EQ(docs[1].labels.front(), -100);
  }
  EXPECT_EQ(entries(cache).size(), 2u);  // no temporaries left
}

TEST(TokenCache, TextOnlyFileHasNoLossMask) {
  TempDir tmp;
  const auto data = tmp.file("t.jsonl", "{\"text\": \"a b c\"}\n{\"text\": \"d\"}\n");
  const fs::path tok = kTokenizers / "qwen2";
  const auto fresh = make_text_jsonl_source(data, tok, kVocab);
  make_text_jsonl_source(data, tok, kVocab, (tmp.path() / "c").string());
  const auto cached = make_text_jsonl_source(data, tok, kVocab, (tmp.path() / "c").string());
  ASSERT_TRUE(from_cache(*cached));
  EXPECT_FALSE(
      fs::exists(token_cache_entry((tmp.path() / "c").string(), token_cache_key(data, tok)) +
                 "/loss_mask.bin"));
  expect_same(all(*cached), all(*fresh));
  for (const Document& d : all(*cached)) EXPECT_TRUE(d.labels.empty());
}

TEST(TokenCache, ChangedInputOrTokenizerIsNotRead) {
  TempDir tmp;
  const fs::path cache = tmp.path() / "cache";
  fs::create_directories(tmp.path() / "tok");
  fs::copy_file(kTokenizers / "llama3" / "tokenizer.json", tmp.path() / "tok" / "tokenizer.json");
  const fs::path tok = tmp.path() / "tok";
  const auto data = tmp.file("d.jsonl", kMixed);
  make_text_jsonl_source(data, tok, kVocab, cache.string());
  ASSERT_TRUE(from_cache(*make_text_jsonl_source(data, tok, kVocab, cache.string())));
  const auto old_key = token_cache_key(data, tok);

  // New content and modification time.
  tmp.file("d.jsonl", R"({"text": "something else entirely"})"
                      "\n");
  fs::last_write_time(data, fs::last_write_time(data) + std::chrono::seconds(5));
  const auto changed = make_text_jsonl_source(data, tok, kVocab, cache.string());
  EXPECT_FALSE(from_cache(*changed));
  expect_same(all(*changed), all(*make_text_jsonl_source(data, tok, kVocab)));
  // The old entry is not accepted for the new key either.
  EXPECT_EQ(read_token_cache(token_cache_entry(cache.string(), old_key), token_cache_key(data, tok),
                             kVocab),
            nullptr);

  // Same input, another tokenizer.json.
  ASSERT_TRUE(from_cache(*make_text_jsonl_source(data, tok, kVocab, cache.string())));
  fs::copy_file(kTokenizers / "gpt2" / "tokenizer.json", tok / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  const auto retok = make_text_jsonl_source(data, tok, kVocab, cache.string());
  EXPECT_FALSE(from_cache(*retok));
  expect_same(all(*retok), all(*make_text_jsonl_source(data, tok, kVocab)));
  EXPECT_TRUE(from_cache(*make_text_jsonl_source(data, tok, kVocab, cache.string())));
}

TEST(TokenCache, DamagedEntryIsIgnoredAndReplaced) {
  TempDir tmp;
  const fs::path tok = kTokenizers / "llama3";
  const fs::path cache = tmp.path() / "cache";
  const auto data = tmp.file("d.jsonl", kMixed);
  const auto fresh = all(*make_text_jsonl_source(data, tok, kVocab));
  const fs::path entry = token_cache_entry(cache.string(), token_cache_key(data, tok));
  const auto damage = [&](const std::string& name, const std::string& how) {
    make_text_jsonl_source(data, tok, kVocab, cache.string());
    ASSERT_TRUE(from_cache(*make_text_jsonl_source(data, tok, kVocab, cache.string())));
    if (how == "flip") {
      std::fstream f(entry / name, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(4);
      f.put('\x7f');
    } else if (how == "truncate") {
      fs::resize_file(entry / name, fs::file_size(entry / name) / 2);
    } else {
      fs::remove(entry / name);
    }
    const auto reread = make_text_jsonl_source(data, tok, kVocab, cache.string());
    EXPECT_FALSE(from_cache(*reread)) << name << " " << how;
    expect_same(all(*reread), fresh);
    // The damaged entry was replaced by a valid one.
    const auto again = make_text_jsonl_source(data, tok, kVocab, cache.string());
    EXPECT_TRUE(from_cache(*again)) << name << " " << how;
    expect_same(all(*again), fresh);
  };
  damage("tokens.bin", "flip");
  damage("offsets.bin", "truncate");
  damage("loss_mask.bin", "remove");
  damage("manifest.json", "truncate");
  damage("manifest.json", "remove");
  EXPECT_EQ(entries(cache).size(), 1u);
}

TEST(TokenCache, OpenDataDefaultLocationAndNone) {
  TempDir tmp;
  const auto data = tmp.file("d.jsonl", kMixed);
  DataOptions o;
  o.data = data.string();
  o.tokenizer = (kTokenizers / "llama3").string();
  o.vocab_size = kVocab;
  o.shuffle = false;
  o.data_cache_dir = "none";
  const auto none = all(*open_data(o));
  EXPECT_FALSE(fs::exists(tmp.path() / ".ulysses_cache"));
  EXPECT_EQ(entries(tmp.path()).size(), 1u);  // only d.jsonl: nothing written
  o.data_cache_dir = "";
  const auto first = all(*open_data(o));
  ASSERT_EQ(entries(tmp.path() / ".ulysses_cache").size(), 1u);
  const auto second = open_data(o);
  EXPECT_TRUE(from_cache(*second));
  expect_same(all(*second), none);
  expect_same(first, none);
}

TEST(TokenCache, UnwritableDirectoryStillOpens) {
  TempDir tmp;
  const auto data = tmp.file("d.jsonl", kMixed);
  const fs::path tok = kTokenizers / "llama3";
  const auto blocker = tmp.file("not_a_dir", "x");  // a file: no directory can be made under it
  const auto fresh = all(*make_text_jsonl_source(data, tok, kVocab));
  for (int i = 0; i < 2; ++i) {
    const auto s = make_text_jsonl_source(data, tok, kVocab, (blocker / "cache").string());
    EXPECT_FALSE(from_cache(*s));
    expect_same(all(*s), fresh);
  }
  EXPECT_FALSE(
      write_token_cache((blocker / "cache" / "e").string(), token_cache_key(data, tok), fresh));
}

TEST(TokenCache, ConcurrentWritersLeaveOneValidEntry) {
  TempDir tmp;
  const auto data = tmp.file("d.jsonl", kMixed);
  const fs::path tok = kTokenizers / "llama3";
  const fs::path cache = tmp.path() / "cache";
  const auto key = token_cache_key(data, tok);
  const std::string entry = token_cache_entry(cache.string(), key);
  const auto fresh = all(*make_text_jsonl_source(data, tok, kVocab));
  std::vector<std::thread> writers;
  std::vector<int> ok(8, 0);
  for (int i = 0; i < 8; ++i)
    writers.emplace_back([&, i] { ok[i] = write_token_cache(entry, key, fresh) ? 1 : 0; });
  for (auto& t : writers) t.join();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(ok[i], 1) << i;
  ASSERT_EQ(entries(cache).size(), 1u);  // the entry; every temporary removed
  const auto cached = read_token_cache(entry, key, kVocab);
  ASSERT_NE(cached, nullptr);
  expect_same(all(*cached), fresh);
}

TEST(TokenCache, DirectoryOption) {
  EXPECT_EQ(token_cache_dir("none", "/x/y/d.jsonl"), "");
  EXPECT_EQ(token_cache_dir("/c", "/x/y/d.jsonl"), "/c");
  EXPECT_EQ(token_cache_dir("", "/x/y/d.jsonl"), "/x/y/.ulysses_cache");
}

}  // namespace
}  // namespace ulysses::data
